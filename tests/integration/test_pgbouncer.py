"""PgBouncer in transaction mode in front of PostgreSQL: what `?prepare_threshold=none` in
OPSGATE_DATABASE_URL is for (docs/scaling.md).

Runs only where Debian's `pgbouncer` is on PATH (CI machines need not install it); the URL
setting itself is checked against the machine's PostgreSQL everywhere."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from bench.procs import Children, start_pgbouncer
from tests.support.env import PG_ADMIN_URL

# The statement psycopg prepares once it ran it more than prepare_threshold (5) times.
QUERY = "SELECT %s::int + 1"


def _pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_url_turns_prepared_statements_off() -> None:
    """Given the URL setting, when opsgate's engine connects, psycopg prepares nothing."""
    from app.core.db import make_engine

    url = "postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1]
    for query, expected in (("?prepare_threshold=none", None), ("", 5)):
        engine = make_engine(url + query, pool_size=1)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
                assert conn.connection.driver_connection.prepare_threshold == expected
        finally:
            engine.dispose()


@pytest.fixture
def pgbouncer(tmp_path: Path) -> Iterator[str]:
    """pgbouncer in transaction mode with two server connections, in front of the test db."""
    if shutil.which("pgbouncer") is None:
        pytest.skip("pgbouncer is not on PATH (apt-get install pgbouncer)")
    children = Children(cwd=tmp_path)
    try:
        url, _ = start_pgbouncer(children, tmp_path / "pgbouncer", PG_ADMIN_URL, pool_size=2)
        yield _pg(url)
    finally:
        children.stop_all()


def _run_on_another_server(url: str, **connect: object) -> None:
    """Run QUERY often enough to be prepared, then again while the server connection that
    prepared it is busy with another client, so pgbouncer hands over the other one."""
    with psycopg.connect(url, autocommit=True, **connect) as a:  # type: ignore[arg-type]
        for n in range(6):
            a.execute(QUERY, (n,))
        with psycopg.connect(url, **connect) as b:  # type: ignore[arg-type]
            b.execute("SELECT 1")  # b's open transaction now holds a's last server
            assert a.execute(QUERY, (7,)).fetchone() == (8,)


def test_prepared_statements_break_in_transaction_mode(pgbouncer: str) -> None:
    """Without the setting, a statement psycopg prepared is missing on the next server."""
    with pytest.raises(psycopg.errors.InvalidSqlStatementName):
        _run_on_another_server(pgbouncer)


def test_prepare_threshold_none_works_in_transaction_mode(pgbouncer: str) -> None:
    """With prepare_threshold=None (what the URL setting passes), it runs anywhere."""
    _run_on_another_server(pgbouncer, prepare_threshold=None)
