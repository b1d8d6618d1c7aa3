"""Benchmark: what a connection checkout costs, pool_pre_ping against opsgate's checkout check.

What it measures
  One short transaction as a stage makes it (a Session: read a row, update it, COMMIT), run
  `--txns` times on one thread against PostgreSQL by two engines in the same run, alternating
  in blocks so drift on the machine hits both alike:
  - `pre_ping`: SQLAlchemy's pool_pre_ping (what opsgate used before): a SELECT 1 on every
    checkout, i.e. every transaction.
  - `opsgate`: `app.core.db.make_engine`, no pre-ping; a pooled connection the server closed
    is found by a zero-timeout poll() of its socket at checkout, without a round trip.
  For each: the statements the driver sent per transaction (counted at psycopg's cursor, so
  the pre-ping's SELECT 1 is seen; BEGIN/COMMIT are not statements), the transactions the
  server committed per transaction (pg_stat_database of the run's own database: the pre-ping
  runs in autocommit, a transaction of its own), and the wall time per transaction; the time
  also for a read-only transaction (a SELECT and COMMIT: no WAL flush, so the round trip that
  the pre-ping adds is not hidden behind the disk).
  Then, for each engine and for a bare pool with neither check (`none`), the errors callers
  see when every pooled connection was closed by the server (pg_terminate_backend, as a
  restart does) and `--pool` transactions follow one after the other.

How to read the output
  `statements_per_txn` and `commits_per_txn` per engine (the saving is one statement and one
  server transaction per checkout); `time_ratio` = opsgate's time per transaction over
  pre_ping's, for the `write` and the `read` transaction (below 1: faster);
  `errors_after_restart` must be 0 for both engines (`none` shows what the check is for);
  `check_us` is the checkout check's own cost. The last line is one JSON object; `valid` is
  false (exit 1) if a caller saw an error with either engine.

It creates a fresh PostgreSQL database (dropped at the end).

    .venv/bin/python -m bench.db_pool [--txns 4000] [--pool 4]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.core import db  # noqa: E402
from bench.pipeline import create_database, drop_database  # noqa: E402

ADMIN_URL = os.environ.get("OPSGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BLOCK = 200


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--txns", type=int, default=4000, help="timed transactions per engine")
    p.add_argument("--pool", type=int, default=4, help="pooled connections the server closes")
    p.add_argument("--pg-admin-url", default=ADMIN_URL)
    return p.parse_args(argv)


class Counted:
    """An engine whose connections count the statements they send, at the driver."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.statements = engine, 0
        counted = self

        class CountingCursor(psycopg.Cursor[Any]):
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                counted.statements += 1
                return super().execute(query, *args, **kwargs)

        def connected(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.cursor_factory = CountingCursor

        event.listen(engine, "connect", connected)


def transaction(engine: Engine) -> None:
    """A stage's short transaction: read a row, change it, commit."""
    with Session(engine) as session:
        n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
        session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
        session.commit()


def read_transaction(engine: Engine) -> None:
    """A read-only transaction (no WAL flush at COMMIT): the round trips show, not the disk."""
    with Session(engine) as session:
        session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
        session.commit()


def server_transactions(admin_url: str, name: str) -> int:
    """Committed transactions of database `name`, once no connection to it is left (a backend
    reports its counts when it exits)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for _ in range(100):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the exiting backends' last stats flush
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def errors_after_restart(make: Callable[[], Engine], admin_url: str, pool: int) -> int:
    """Errors callers see when the server closed every pooled connection."""
    engine = make()
    try:
        conns = [engine.connect() for _ in range(pool)]
        pids = [c.connection.dbapi_connection.info.backend_pid for c in conns]  # type: ignore[union-attr]
        for c in conns:
            c.close()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        errors = 0
        for _ in range(pool):
            try:
                transaction(engine)
            except Exception:
                errors += 1
        return errors
    finally:
        engine.dispose()


def check_cost_us(engine: Engine, n: int = 20000) -> float:
    """The checkout check alone, on a live pooled connection, in microseconds."""
    raw = engine.raw_connection()
    try:
        dbapi = raw.dbapi_connection
        start = time.perf_counter()
        for _ in range(n):
            db._closed_by_server(dbapi, None, None)
        return (time.perf_counter() - start) / n * 1e6
    finally:
        raw.close()


def per_transaction(make: Callable[[], Engine], admin_url: str, name: str) -> tuple[float, float]:
    """Statements the driver sent and transactions the server committed, per transaction.

    One engine at a time (the server counts per database): a run of 1 transaction and one of
    BLOCK + 1 on fresh engines, so connecting (and the dialect's first-connect queries)
    cancels out of the difference.
    """
    runs = []
    for count in (1, BLOCK + 1):
        before = server_transactions(admin_url, name)
        counted = Counted(make())
        for _ in range(count):
            transaction(counted.engine)
        counted.engine.dispose()
        runs.append((counted.statements, server_transactions(admin_url, name) - before))
    return (runs[1][0] - runs[0][0]) / BLOCK, (runs[1][1] - runs[0][1]) / BLOCK


def timings(engines: dict[str, Engine], txns: int) -> tuple[dict[str, dict[str, float]], int]:
    """Milliseconds per transaction, per kind and engine, alternating in blocks on warm pools."""
    kinds = {"write": transaction, "read": read_transaction}
    elapsed = {(kind, side): 0.0 for kind in kinds for side in engines}
    for engine in engines.values():
        transaction(engine)
    done = 0
    while done < txns:
        for kind, run in kinds.items():
            for side, engine in engines.items():
                start = time.perf_counter()
                for _ in range(BLOCK):
                    run(engine)
                elapsed[kind, side] += time.perf_counter() - start
        done += BLOCK
    ms = {
        kind: {side: round(elapsed[kind, side] / done * 1000, 3) for side in engines}
        for kind in kinds
    }
    return ms, done


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    name = f"opsgate_bench_pool_{secrets.token_hex(4)}"
    url = create_database(args.pg_admin_url, name)
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
            conn.execute("INSERT INTO counter VALUES (1, 0)")

        def pre_ping() -> Engine:
            return create_engine(sa_url, pool_pre_ping=True, pool_size=args.pool)

        def ours() -> Engine:
            return db.make_engine(sa_url, pool_size=args.pool)

        def none() -> Engine:
            return create_engine(sa_url, pool_size=args.pool)

        sides = {"pre_ping": pre_ping, "opsgate": ours}
        counts = {
            side: per_transaction(make, args.pg_admin_url, name) for side, make in sides.items()
        }
        engines = {side: make() for side, make in sides.items()}
        ms, done = timings(engines, args.txns)
        check_us = check_cost_us(engines["opsgate"])
        for engine in engines.values():
            engine.dispose()
        errors = {
            side: errors_after_restart(make, args.pg_admin_url, args.pool)
            for side, make in {**sides, "none": none}.items()
        }
    finally:
        drop_database(args.pg_admin_url, name)
    ratio = {kind: round(ms[kind]["opsgate"] / ms[kind]["pre_ping"], 3) for kind in ms}
    result = {
        "bench": "db_pool",
        "txns": done,
        "statements_per_txn": {k: round(v[0], 2) for k, v in counts.items()},
        "commits_per_txn": {k: round(v[1], 2) for k, v in counts.items()},
        "ms_per_txn": ms,
        "time_ratio": ratio,
        "check_us": round(check_us, 2),
        "errors_after_restart": errors,
        "pool": args.pool,
        "valid": errors["pre_ping"] == 0 and errors["opsgate"] == 0,
    }
    print(
        f"per transaction (read + update + commit), {done} each: "
        f"statements pre_ping {result['statements_per_txn']['pre_ping']} -> "
        f"opsgate {result['statements_per_txn']['opsgate']}; server commits "
        f"{result['commits_per_txn']['pre_ping']} -> {result['commits_per_txn']['opsgate']}; "
        f"{ms['write']['pre_ping']} ms -> {ms['write']['opsgate']} ms (ratio {ratio['write']}); "
        f"read-only (SELECT + commit): {ms['read']['pre_ping']} ms -> {ms['read']['opsgate']} ms "
        f"(ratio {ratio['read']}); checkout check {result['check_us']} us"
    )
    print(
        f"after the server closed all {args.pool} pooled connections, errors seen by the next "
        f"{args.pool} transactions: " + ", ".join(f"{k} {v}" for k, v in errors.items())
    )
    print(json.dumps(result))
    return 0 if result["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
