"""How much database work each task does: SQL statements and commits, counted per task run.

Counted with SQLAlchemy's engine events (`before_cursor_execute`, `commit`) in the thread that
runs the task, between `task_prerun` and `task_postrun`; work outside a task (the consumer
loop, the API) is not counted. Each task's counts are added to a hash in Redis in the same
pipelined round trip as its queue wait (app.telemetry.metrics.record_task), so the fleet's
totals are one scrape away (`opsgate_task_db_statements_total`, `..._commits_total`,
`opsgate_task_runs_total`) and the budget per job is a division (tests/integration/
test_db_budget.py holds it, bench.pipeline prints it).

A statement is one round trip that carries SQL: an `executemany` batch is one, BEGIN, COMMIT,
ROLLBACK and savepoint releases are not (SQLite's explicit BEGIN IMMEDIATE goes through the
cursor; PostgreSQL's BEGIN is implicit in psycopg and never reaches these events).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "RELEASE SAVEPOINT")
_local = threading.local()
_installed = False
_lock = threading.Lock()


@dataclass
class Tally:
    """What one task run sent to the database."""

    statements: int = 0
    commits: int = 0


def _on_execute(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
    tally: Tally | None = getattr(_local, "tally", None)
    if tally is not None and not statement.lstrip()[:17].upper().startswith(_CONTROL):
        tally.statements += 1


def _on_commit(conn: Any) -> None:
    tally: Tally | None = getattr(_local, "tally", None)
    if tally is not None:
        tally.commits += 1


def install() -> None:
    """Listen on every engine of this process (once; engines are made after fork)."""
    global _installed
    with _lock:
        if _installed:
            return
        event.listen(Engine, "before_cursor_execute", _on_execute)
        event.listen(Engine, "commit", _on_commit)
        _installed = True


def start() -> None:
    """Count this thread's database work from now on (a task starts)."""
    _local.tally = Tally()


def stop() -> Tally | None:
    """Stop counting in this thread and return what was counted (None: nothing was started)."""
    tally: Tally | None = getattr(_local, "tally", None)
    _local.tally = None
    return tally
