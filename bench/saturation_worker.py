"""An opsgate worker that times what each task execution waits on (for bench/saturation.py).

    python -m bench.saturation_worker OUTDIR worker --queues ... --pool threads --concurrency C

It is `opsgate worker` (the same CLI, the same Celery app and settings) with light timing hooks
installed first. For every task execution, in the pool thread that runs it (task_prerun to
task_postrun), it adds up the wall-clock time spent inside:

  http      httpx.Client.send (every downstream call, Stripe's included)
  sql       SQLAlchemy's dialect execute (a statement's round trip to the database)
  commit    the dialect's commit / rollback
  checkout  taking a connection from the SQLAlchemy pool (waiting for one, connecting, and the
            pool_pre_ping round trip)
  publish   kombu Producer.publish (the next stage's message to Redis)
  redis     other Redis commands (breaker, kill switch, rate limits, ...)
  model     httpx2.Client.send (the openai SDK's own HTTP client: model calls, the wait for
            the model's answer included)

Only the outermost timed region counts (a Redis command inside a publish is publish time), so
the categories do not overlap; `other` = wall - all of them = Python CPU, waits for the GIL and
anything untimed. The thread's CPU time (time.thread_time) is recorded too. One JSON line per
task execution goes to OUTDIR/tasks-<pid>.jsonl: {"t0": start (epoch s), "name", "wall", "cpu",
"http", ...} in seconds, and how many timed regions of each category ran ("http_n", ...).
At shutdown each worker writes OUTDIR/statements-<pid>.json: every SQL statement shape run
inside tasks, with its executions and seconds (warm-up included).
The hooks cost a few perf_counter calls per statement or request (microseconds, against the
tens of milliseconds a task takes).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import signals

CATEGORIES = ("http", "sql", "commit", "checkout", "publish", "redis", "model")

_local = threading.local()
_write_lock = threading.Lock()
_outdir: Path | None = None
_files: dict[int, Any] = {}
_KEY_LEN = 150
# Statement shape -> [executions, seconds], over the worker's life (warm-up included).
_statements: dict[str, list[Any]] = {}
_stmt_lock = threading.Lock()


def _statement_key(statement: Any) -> str:
    """A statement's shape: whitespace collapsed, cut short (parameters are separate)."""
    text = " ".join(str(statement).split())
    return text if len(text) <= _KEY_LEN else text[: _KEY_LEN - 3] + "..."


def _timed(category: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        rec = getattr(_local, "rec", None)
        if rec is None or getattr(_local, "inside", False):
            return fn(*args, **kwargs)
        _local.inside = True
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            rec[category] += elapsed
            rec[category + "_n"] += 1
            _local.inside = False
            if category == "sql" and len(args) > 2:
                # dialect.do_execute*(self, cursor, statement, ...)
                key = _statement_key(args[2])
                with _stmt_lock:
                    entry = _statements.setdefault(key, [0, 0.0])
                    entry[0] += 1
                    entry[1] += elapsed

    inner.__saturation_timed__ = True  # type: ignore[attr-defined]
    return inner


def _patch(owner: Any, attr: str, category: str) -> None:
    fn = getattr(owner, attr, None)
    if fn is None or getattr(fn, "__saturation_timed__", False):
        return
    setattr(owner, attr, _timed(category, fn))


def install() -> None:
    """Wrap the I/O entry points (class attributes, so every client and engine is covered)."""
    import httpx
    import kombu.messaging
    import redis.client
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
    from sqlalchemy.engine import default
    from sqlalchemy.pool import base as pool_base

    _patch(httpx.Client, "send", "http")
    dialects = [default.DefaultDialect, pg_psycopg.PGDialect_psycopg]
    for dialect in dialects:
        for attr in ("do_execute", "do_executemany", "do_execute_no_params"):
            if attr in vars(dialect):
                _patch(dialect, attr, "sql")
        for attr in ("do_commit", "do_rollback"):
            if attr in vars(dialect):
                _patch(dialect, attr, "commit")
    _patch(pool_base.Pool, "connect", "checkout")
    _patch(kombu.messaging.Producer, "publish", "publish")
    _patch(redis.client.Redis, "execute_command", "redis")
    _patch(redis.client.Pipeline, "execute", "redis")
    try:  # the openai SDK sends through httpx2, a package apart from httpx
        import httpx2

        _patch(httpx2.Client, "send", "model")
    except ImportError:
        pass


@signals.task_prerun.connect
def _start(**_kw: Any) -> None:
    _local.rec = {**dict.fromkeys(CATEGORIES, 0.0), **{c + "_n": 0 for c in CATEGORIES}}
    _local.inside = False
    _local.t0 = time.time()
    _local.wall0 = time.perf_counter()
    _local.cpu0 = time.thread_time()


@signals.task_postrun.connect
def _stop(task: Any = None, state: str | None = None, **_kw: Any) -> None:
    rec = getattr(_local, "rec", None)
    if rec is None:
        return
    _local.rec = None
    line = {
        "t0": _local.t0,
        "name": getattr(task, "name", "?"),
        "state": state,
        "wall": time.perf_counter() - _local.wall0,
        "cpu": time.thread_time() - _local.cpu0,
        **rec,
    }
    _write(json.dumps(line))


def _write(line: str) -> None:
    assert _outdir is not None
    pid = os.getpid()
    with _write_lock:
        f = _files.get(pid)
        if f is None:
            f = _files[pid] = (_outdir / f"tasks-{pid}.jsonl").open("a", buffering=1)
        f.write(line + "\n")


def _dump_statements(**_kw: Any) -> None:
    """Write the statement counts (at worker shutdown)."""
    if _outdir is None:
        return
    with _stmt_lock:
        data = {k: list(v) for k, v in _statements.items()}
    try:
        (_outdir / f"statements-{os.getpid()}.json").write_text(json.dumps(data))
    except OSError as exc:  # diagnostics must not break the worker's shutdown
        print(f"saturation_worker: could not write statements: {exc}", file=sys.stderr)


signals.worker_shutdown.connect(_dump_statements)


def read_statements(folder: Path) -> dict[str, list[Any]]:
    """Statement shape -> [executions, seconds], summed over the workers that wrote them."""
    out: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("statements-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key, (count, secs) in data.items():
            entry = out.setdefault(key, [0, 0.0])
            entry[0] += count
            entry[1] += secs
    return out


def read_records(folder: Path) -> list[dict[str, Any]]:
    """Every task record written under folder (the bench process reads them back)."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("tasks-*.jsonl")):
        for raw in path.read_text().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue  # a line being written while we read
    return out


def main() -> None:
    """Install the hooks, then run the opsgate CLI with the remaining arguments."""
    global _outdir
    if len(sys.argv) < 3:
        sys.exit("usage: python -m bench.saturation_worker OUTDIR worker [worker options]")
    _outdir = Path(sys.argv[1])
    _outdir.mkdir(parents=True, exist_ok=True)
    install()
    sys.argv = ["opsgate", *sys.argv[2:]]
    from app.cli import main as opsgate_main

    opsgate_main()


if __name__ == "__main__":
    main()
