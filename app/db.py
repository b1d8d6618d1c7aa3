"""Engine and sessions, made lazily per process (after fork), plus schema migration."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import ServiceUnavailable
from app.settings import PROJECT_ROOT, get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_pid: int | None = None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Several worker threads and processes write the embedded SQLite file: WAL lets readers
    # and one writer proceed together, and the busy timeout waits for the lock instead of
    # failing with "database is locked".
    # pysqlite's own transaction handling defers BEGIN until the first write; we turn it off
    # and emit BEGIN IMMEDIATE in the "begin" hook, so a read-then-write transaction takes the
    # write lock up front instead of failing to upgrade its lock later.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """Build an engine with the settings each backend needs."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    size = get_settings().db_pool_size
    # pre_ping costs a round trip per checkout; it is what lets the fleet ride out a
    # PostgreSQL restart without failing the first request on each stale connection.
    return create_engine(url, pool_pre_ping=True, pool_size=size, max_overflow=size // 2)


def get_engine() -> Engine:
    """The engine of this process; a forked child builds its own."""
    global _engine, _factory, _pid
    with _lock:
        if _engine is None or _pid != os.getpid():
            _engine = make_engine(get_settings().resolved_database_url())
            _factory = sessionmaker(_engine, expire_on_commit=False)
            _pid = os.getpid()
        return _engine


def dispose_engine() -> None:
    """Close this process's pool (on shutdown, or when settings change in tests)."""
    global _engine, _factory, _pid
    with _lock:
        if _engine is not None and _pid == os.getpid():
            _engine.dispose()
        _engine, _factory, _pid = None, None, None


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction the caller commits; rolled back on error, always closed."""
    get_engine()
    assert _factory is not None
    session = _factory()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def describe_url(url: str) -> str:
    """The URL without its password, for error messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def check_database() -> None:
    """Raise ServiceUnavailable with a clear line if the database does not answer."""
    url = get_settings().resolved_database_url()
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ServiceUnavailable(f"database unreachable at {describe_url(url)}: {reason}") from exc


def alembic_config() -> Any:
    """Alembic configuration pointing at the project's migrations/ folder."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", get_settings().resolved_database_url())
    return cfg


def upgrade() -> None:
    """Bring the schema to the newest migration (`opsgate db upgrade`)."""
    from alembic import command

    check_database()
    command.upgrade(alembic_config(), "head")
