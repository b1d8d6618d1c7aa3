"""Run `opsgate api` with its intake under cProfile and per-phase timers (bench diagnostics).

    python -m bench.intake_profiled_api OUTDIR SKIP api --host H --port P

Started by bench/intake.py for an extra, untimed batch when the ratio is below its target.
The first SKIP requests to /webhooks/zendesk (the warm-up) are not recorded. After them:

* the event-loop thread (uvicorn, Starlette, FastAPI, the endpoint's own code) runs under one
  cProfile, and each threadpool thread under its own while it runs `submissions.accept_delivery`
  or `outbox.send_after_commit`; the clock is each thread's CPU time, so waits on the database,
  Redis and the GIL are not in it (the phase timers below show them);
* wall-clock timers around each phase of a request: the whole ASGI call (until the response
  is sent, and until the after-commit publish finished), signature verification, parsing,
  the hand-off to the threadpool, `accept_delivery` and `send_after_commit` (wall and thread
  CPU, the Celery publish), every SQL statement (grouped by kind and table), the pool's
  pre-ping, and `Session.commit`.

On `POST /_bench/profile-dump` (sent by the bench once the load is over and every publish
has finished; also tried at exit) it writes OUTDIR/phases.json and OUTDIR/*.pstats. The
code it measures is opsgate's own, unchanged: functions are wrapped, not replaced.
"""

from __future__ import annotations

import atexit
import cProfile
import functools
import json
import os
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

DUMP_PATH = "/_bench/profile-dump"
_outdir: Path | None = None
_skip = 0
_seen = 0
_on = False
_lock = threading.Lock()
_phases: dict[str, list[list[float]]] = defaultdict(list)  # name -> [[wall, cpu|-1], ...]
_loop_prof: cProfile.Profile | None = None
_thread_profs: list[tuple[int, str, cProfile.Profile]] = []
_local = threading.local()


def record(name: str, wall: float, cpu: float = -1.0) -> None:
    """One sample of a phase (only once the warm-up is over)."""
    if _on:
        _phases[name].append([wall, cpu])  # list.append is atomic under the GIL


def _thread_profiler() -> cProfile.Profile:
    prof = getattr(_local, "prof", None)
    if prof is None:
        prof = cProfile.Profile(time.thread_time)
        _local.prof = prof
        with _lock:
            _thread_profs.append((threading.get_ident(), threading.current_thread().name, prof))
    return prof


def in_thread(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a function that runs in a threadpool thread: profile it, time it (wall and CPU)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _on:
            return fn(*args, **kwargs)
        prof = _thread_profiler()
        w0, c0 = time.perf_counter(), time.thread_time()
        prof.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            prof.disable()
            record(name, time.perf_counter() - w0, time.thread_time() - c0)

    return wrapper


def timed(name: str, fn: Callable[..., Any], cpu: bool = False) -> Callable[..., Any]:
    """Wrap a synchronous function with a wall-clock (and optionally thread-CPU) timer."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w0 = time.perf_counter()
        c0 = time.thread_time() if cpu else 0.0
        try:
            return fn(*args, **kwargs)
        finally:
            record(name, time.perf_counter() - w0, time.thread_time() - c0 if cpu else -1.0)

    return wrapper


def timed_async(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a coroutine function with a wall-clock timer."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        w0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            record(name, time.perf_counter() - w0)

    return wrapper


_WORDS = re.compile(
    r"^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|SAVEPOINT|RELEASE SAVEPOINT|"
    r"ROLLBACK TO SAVEPOINT)\b",
    re.I,
)
_FROM = re.compile(r"\bFROM\s+(\w+)", re.I)
_TABLE = re.compile(r"^\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", re.I)


def _sql_label(statement: str) -> str:
    if statement.lstrip().upper().startswith("WITH"):
        # The intake's one statement on PostgreSQL: data-modifying CTEs, one table each.
        tables = re.findall(r"INSERT INTO (\w+)", statement)
        return "sql: WITH ... INSERT INTO " + " + ".join(tables)
    m = _WORDS.match(statement)
    if not m:
        return "sql: " + statement.strip().split(None, 1)[0].upper()
    verb = m.group(1).upper()
    if verb.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
        return f"sql: {verb}"
    t = _TABLE.match(statement) if verb != "SELECT" else _FROM.search(statement)
    suffix = " FOR UPDATE" if verb == "SELECT" and "FOR UPDATE" in statement.upper() else ""
    return f"sql: {verb} {t.group(1) if t else '?'}{suffix}"


def _install_sql_timers() -> None:
    from sqlalchemy import event
    from sqlalchemy.dialects.postgresql import _psycopg_common
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        stack = conn.info.get("bench_t0")
        if stack:
            record(_sql_label(stmt), time.perf_counter() - stack.pop())

    cls = _psycopg_common._PGDialect_common_psycopg
    cls.do_ping = timed("sql: SELECT 1 (pool pre-ping on checkout)", cls.do_ping)  # type: ignore[method-assign]
    Session.commit = timed("Session.commit (flush + COMMIT)", Session.commit)  # type: ignore[method-assign]


def _install() -> None:
    """Wrap the intake path's functions (the code itself is not changed)."""
    import app.api.main as api_main
    import app.api.webhooks as webhooks
    from app.intake import submissions, zendesk
    from app.jobs import sender

    zendesk.verify = timed("zendesk.verify (signature)", zendesk.verify)
    zendesk.to_submission = timed("zendesk.to_submission", zendesk.to_submission)
    submissions.parse_submission = timed(
        "intake.parse_submission (pydantic)", submissions.parse_submission
    )
    webhooks.read_body = timed_async("read_body", webhooks.read_body)
    submissions.accept_delivery = in_thread(
        "intake.accept_delivery (thread; DB transaction)", submissions.accept_delivery
    )
    # Per batch, in the sender's thread (a batch carries the messages of several accepts).
    sender.Sender._deliver = in_thread(  # type: ignore[method-assign]
        "sender: one batch (sender thread; celery send_task + one Redis write)",
        sender.Sender._deliver,
    )
    original_rit = webhooks.run_in_threadpool
    webhooks.run_in_threadpool = timed_async(
        "run_in_threadpool(accept_delivery) incl. thread hand-off", original_rit
    )
    _install_sql_timers()

    original_factory = api_main.create_app

    def create_app() -> Any:
        inner = original_factory()

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            global _seen
            if scope["type"] == "http" and scope.get("path") == DUMP_PATH:
                # uvicorn re-raises SIGTERM after its graceful shutdown, so atexit never
                # runs: the bench asks for the dump over HTTP once the load is over.
                _dump()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"dumped": true}'})
                return
            if scope["type"] != "http" or scope.get("path") != "/webhooks/zendesk":
                await inner(scope, receive, send)
                return
            _seen += 1
            if _seen == _skip + 1:
                _start()
            if not _on:
                await inner(scope, receive, send)
                return
            t0 = time.perf_counter()
            sent: list[float] = []

            async def timed_send(message: MutableMapping[str, Any]) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    sent.append(time.perf_counter())

            await inner(scope, receive, timed_send)
            end = time.perf_counter()
            if sent:
                record("request: ASGI call until the response is sent", sent[0] - t0)
            record("request: ASGI call incl. after-commit publish (background)", end - t0)

        return asgi

    api_main.create_app = create_app


def _start() -> None:
    """Warm-up over: record from now on (called in the event-loop thread)."""
    global _on, _loop_prof
    _loop_prof = cProfile.Profile(time.thread_time)
    _loop_prof.enable()
    _on = True


def _dump() -> None:
    global _on, _loop_prof
    _on = False
    if _outdir is None or (_outdir / "phases.json").exists():
        return
    if _loop_prof is not None:
        _loop_prof.disable()
        _loop_prof.dump_stats(str(_outdir / "loop.pstats"))
        _loop_prof = None
    with _lock:
        profs = list(_thread_profs)
    for k, (_tid, _name, prof) in enumerate(profs):
        try:
            prof.dump_stats(str(_outdir / f"thread-{k}.pstats"))
        except Exception as exc:  # a diagnostics aid must not break the shutdown
            print(f"intake_profiled_api: could not dump thread {k}: {exc}", file=sys.stderr)
    data = {
        "skipped": _skip,
        "seen": _seen,
        "recorded_requests": max(_seen - _skip, 0),
        "threads_profiled": len(profs),
        "phases": dict(_phases),
    }
    tmp = _outdir / "phases.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, _outdir / "phases.json")


def main() -> None:
    """Install the wrappers, then run the opsgate CLI with the remaining arguments."""
    global _outdir, _skip
    if len(sys.argv) < 4:
        sys.exit("usage: python -m bench.intake_profiled_api OUTDIR SKIP api [options]")
    _outdir = Path(sys.argv[1])
    _outdir.mkdir(parents=True, exist_ok=True)
    _skip = int(sys.argv[2])
    sys.argv = ["opsgate", *sys.argv[3:]]
    _install()
    atexit.register(_dump)
    from app.cli import main as opsgate_main

    opsgate_main()


if __name__ == "__main__":
    main()
