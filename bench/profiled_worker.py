"""Run an opsgate worker with every task execution under cProfile (for bench diagnostics).

    python -m bench.profiled_worker OUTDIR worker --queues ... --pool threads ...

Each pool thread (threads pool) or pool process (prefork) profiles its own task executions,
from task_prerun to task_postrun. The clock is the thread's CPU time (BENCH_PROFILE_CLOCK=cpu,
the default: what each function costs, without the waits on I/O and on the GIL that a threads
pool piles up) or wall-clock time (BENCH_PROFILE_CLOCK=wall: waits included). Each thread
writes its stats to OUTDIR/prof-<pid>-<tid>.pstats at most once a second (from its own thread,
so no profiler is touched by two threads), and once more at shutdown. The Celery consumer
loop itself (receiving, acking) is not profiled.
"""

from __future__ import annotations

import cProfile
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from celery import signals

_DUMP_EVERY = 1.0
_local = threading.local()
_all: list[tuple[int, int, cProfile.Profile]] = []
_lock = threading.Lock()
_outdir: Path | None = None


def _new_profiler() -> cProfile.Profile:
    if os.environ.get("BENCH_PROFILE_CLOCK", "cpu") == "wall":
        return cProfile.Profile()
    return cProfile.Profile(time.thread_time)


def _profiler() -> cProfile.Profile:
    prof: cProfile.Profile | None = getattr(_local, "prof", None)
    if prof is None or getattr(_local, "pid", None) != os.getpid():
        prof = _new_profiler()
        _local.prof, _local.pid, _local.dumped = prof, os.getpid(), 0.0
        with _lock:
            _all.append((os.getpid(), threading.get_ident(), prof))
    return prof


def _dump(pid: int, tid: int, prof: cProfile.Profile) -> None:
    assert _outdir is not None
    path = _outdir / f"prof-{pid}-{tid}.pstats"
    tmp = path.with_suffix(".tmp")
    prof.dump_stats(str(tmp))
    os.replace(tmp, path)


@signals.task_prerun.connect
def _start(**_kw: Any) -> None:
    _profiler().enable()


@signals.task_postrun.connect
def _stop(**_kw: Any) -> None:
    prof = _profiler()
    prof.disable()
    now = time.monotonic()
    if now - _local.dumped >= _DUMP_EVERY:
        _local.dumped = now
        _dump(os.getpid(), threading.get_ident(), prof)


def _dump_all(**_kw: Any) -> None:
    # At shutdown the pool is idle: every profiler is disabled, so reading them is safe.
    with _lock:
        mine = [(p, t, prof) for p, t, prof in _all if p == os.getpid()]
    for pid, tid, prof in mine:
        try:
            _dump(pid, tid, prof)
        except Exception as exc:  # a diagnostics aid must not break the worker's shutdown
            print(f"profiled_worker: could not dump {pid}/{tid}: {exc}", file=sys.stderr)


signals.worker_shutdown.connect(_dump_all)
signals.worker_process_shutdown.connect(_dump_all)


def main() -> None:
    """Install the profiling hooks, then run the opsgate CLI with the remaining arguments."""
    global _outdir
    if len(sys.argv) < 3:
        sys.exit("usage: python -m bench.profiled_worker OUTDIR worker [worker options]")
    _outdir = Path(sys.argv[1])
    _outdir.mkdir(parents=True, exist_ok=True)
    sys.argv = ["opsgate", *sys.argv[2:]]
    from app.cli import main as opsgate_main

    opsgate_main()


if __name__ == "__main__":
    main()
