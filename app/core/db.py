"""Engine and sessions, made lazily per process (after fork), plus schema migration."""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import SchemaNotCurrent, ServiceUnavailable
from app.settings import PROJECT_ROOT, Settings, get_settings

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


def _prepare_threshold_from_url(
    dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]
) -> None:
    """Honour `?prepare_threshold=none` (or N) in a PostgreSQL URL.

    Behind PgBouncer in transaction mode (before 1.21, or without max_prepared_statements),
    each transaction may run on another server connection, so psycopg's server-side prepared
    statements (made after 5 executions on a connection) are missing or, worse, another
    statement of the same name. psycopg turns them off with prepare_threshold=None, but
    SQLAlchemy hands URL query values to psycopg as strings; this makes the URL say it."""
    value = cparams.get("prepare_threshold")
    if dialect.name == "postgresql" and isinstance(value, str):
        cparams["prepare_threshold"] = None if value.lower() in ("", "none") else int(value)


# On the Engine class: every engine (workers, intake, migrations, doctor) reads the same URL.
event.listen(Engine, "do_connect", _prepare_threshold_from_url)


def make_engine(url: str, pool_size: int | None = None) -> Engine:
    """Build an engine with the settings each backend needs."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    size = pool_size or get_settings().db_pool_size
    # No pool_pre_ping: its SELECT 1 is a round trip (and, in autocommit, a server-side
    # transaction) on every checkout, i.e. every transaction. A pooled connection the server
    # has closed is instead found for free when it is taken (_closed_by_server), and the pool
    # replaces it before any statement runs. See _closed_by_server for what that leaves.
    engine = create_engine(url, pool_size=size, max_overflow=size // 2)
    event.listen(engine, "checkout", _closed_by_server)
    return engine


def _closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed, so the pool opens a fresh one.

    An idle connection in the pool has nothing to read: we sent no query, and we LISTEN for
    nothing. When PostgreSQL restarts, fails over or runs pg_terminate_backend, the backend
    sends its FATAL message and closes the socket, so the socket turns readable (data or EOF).
    One poll() with a zero timeout asks the kernel, without a round trip. DisconnectionError
    is SQLAlchemy's documented checkout signal: the pool discards this connection, connects
    again and hands out the new one; no statement of the caller's transaction has run yet,
    which is the only point where a retry is certainly safe.

    Nothing is retried after that point. A connection that dies once taken (the server stops
    mid-transaction) fails the statement; SQLAlchemy then invalidates the whole pool, so the
    next checkouts open fresh connections; and the caller's unit of work is redone by its
    owner only where that is known to be safe: a stage task re-sends its message (tasks/base.py;
    the stages are idempotent, so a COMMIT whose answer was lost is seen as done), the API
    answers 503 (the sender retries; intake dedupes deliveries). A COMMIT is never re-sent.
    A server that vanished without closing the socket (a cut cable) is not seen here, as a
    pre-ping would hang on it too; the first statement then fails and is handled as above.
    """
    if dbapi_conn.closed:
        raise DisconnectionError("the connection was closed")
    fd = dbapi_conn.fileno()
    # poll(), not select(): select() cannot watch a descriptor above 1023. gevent's monkey
    # patching removes select.poll; its select() has no such limit.
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        readable = bool(poller.poll(0))
    else:
        readable = bool(select.select([fd], [], [], 0)[0])
    if readable:
        raise DisconnectionError("the server closed the connection while it was in the pool")


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


def transient(exc: BaseException) -> bool:
    """Whether a database error may pass on retry: the server could not be reached or cut the
    connection (a restart, a failover), or aborted the transaction (a deadlock, a timeout)."""
    # SQLAlchemy wraps every driver error: a dropped connection shows as OperationalError or
    # InterfaceError (psycopg's "the connection is closed"), or as any DBAPIError whose
    # connection the pool invalidated.
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def describe_url(url: str) -> str:
    """The URL without its password, for error messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _engine_for(settings: Settings | None) -> Iterator[tuple[Engine, str]]:
    """This process's engine and URL; or, for other settings (`opsgate doctor` reads them
    without the production checks), a one-connection engine of their own."""
    if settings is None:
        yield get_engine(), get_settings().resolved_database_url()
        return
    url = settings.resolved_database_url()
    engine = make_engine(url, pool_size=1)
    try:
        yield engine, url
    finally:
        engine.dispose()


def check_database(settings: Settings | None = None) -> None:
    """Raise ServiceUnavailable with a clear line if the database does not answer."""
    with _engine_for(settings) as (engine, url):
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            where = describe_url(url)
            raise ServiceUnavailable(f"database unreachable at {where}: {reason}") from exc


def alembic_config() -> Any:
    """Alembic configuration pointing at the project's migrations/ folder."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", get_settings().resolved_database_url())
    return cfg


def schema_revisions(settings: Settings | None = None) -> tuple[str | None, str, set[str]]:
    """The database's schema revision (None: no opsgate schema), the migrations' head, and
    every revision the migrations know."""
    # A read-only look: alembic's INFO lines (plugins, DDL mode) are noise before a command.
    quiet = logging.getLogger("alembic")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
        head = script.get_current_head()
        assert head is not None
        with _engine_for(settings) as (engine, _), engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        quiet.setLevel(level)
    return current, head, {rev.revision for rev in script.walk_revisions()}


def check_schema(settings: Settings | None = None) -> None:
    """Raise (one line that says what to do) unless the database answers and its schema is
    at the migrations' head."""
    check_database(settings)
    current, head, known = schema_revisions(settings)
    if current == head:
        return
    where = describe_url((settings or get_settings()).resolved_database_url())
    if current is None:
        raise SchemaNotCurrent(
            f"database at {where} has no opsgate schema (head is {head}) — run: opsgate db upgrade"
        )
    if current not in known:
        raise SchemaNotCurrent(
            f"database at {where} is at schema {current}, which this opsgate does not know "
            f"(its head is {head}) — run the opsgate version that migrated it"
        )
    raise SchemaNotCurrent(
        f"database at {where}: schema is at {current}, head is {head} — run: opsgate db upgrade"
    )


def explain_error(exc: Exception) -> str | None:
    """One line for a database error a command met, naming the fix; None if it is not one
    of the kinds a user can fix (no schema, unreachable)."""
    if not isinstance(exc, DBAPIError):
        return None
    where = describe_url(get_settings().resolved_database_url())
    text_ = str(exc.orig or exc).lower()
    if "no such table" in text_ or ("relation" in text_ and "does not exist" in text_):
        return f"database at {where} has no opsgate schema — run: opsgate db upgrade"
    if "no such column" in text_ or ("column" in text_ and "does not exist" in text_):
        return f"database at {where} has an older opsgate schema — run: opsgate db upgrade"
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        return f"database unreachable at {where}: {reason}"
    return None


def upgrade() -> None:
    """Bring the schema to the newest migration (`opsgate db upgrade`)."""
    from alembic import command

    check_database()
    command.upgrade(alembic_config(), "head")
