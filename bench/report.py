"""Where a pipeline run's time went: per-hop durations from job_events, tool-call latencies
from tool_calls, database activity, and the top of a worker profile."""

from __future__ import annotations

import io
import pstats
import re
import statistics
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, text

# The job_events of one completed support_refund job, in order, and the hop between each pair.
EXPECTED = ("queued", "planned", "ready", "executed", "ready", "executed", "completed")
HOP_NAMES = (
    "plan              (queued -> planned)",
    "verify_proposal   (planned -> ready)",
    "execute s1 refund (ready -> executed)",
    "verify_outcome s1 (executed -> ready)",
    "execute s2 note   (ready -> executed)",
    "verify_outcome s2 (executed -> completed)",
)


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"avg {statistics.fmean(values):7.1f} ms  p50 {statistics.median(values):7.1f}"
        f"  p95 {p95:7.1f}"
    )


def _query(sql: str, **params: Any) -> list[Any]:
    from app.core.db import get_engine

    stmt = text(sql)
    for name, value in params.items():
        if isinstance(value, list):
            stmt = stmt.bindparams(bindparam(name, expanding=True))
    with get_engine().connect() as conn:
        return list(conn.execute(stmt, params))


def _as_dt(value: Any) -> datetime:
    # SQLite hands DateTime columns back as text through a raw text() query.
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def status_counts(job_ids: list[str]) -> dict[str, int]:
    """Jobs of this set by status (one query)."""
    rows = _query("SELECT status, COUNT(*) FROM jobs WHERE id IN :ids GROUP BY status", ids=job_ids)
    return {r[0]: int(r[1]) for r in rows}


def last_completion(job_ids: list[str]) -> datetime | None:
    """When the last of these jobs reached `completed` (the workers' clock, this machine)."""
    rows = _query(
        "SELECT MAX(at) FROM job_events WHERE to_status = 'completed' AND job_id IN :ids",
        ids=job_ids,
    )
    return _as_dt(rows[0][0]) if rows and rows[0][0] is not None else None


def escalation_reasons(job_ids: list[str]) -> dict[str, int]:
    """Escalations of these jobs by reason (a clean run has none)."""
    rows = _query(
        "SELECT reason, COUNT(*) FROM escalations WHERE job_id IN :ids GROUP BY reason", ids=job_ids
    )
    return {r[0]: int(r[1]) for r in rows}


def stage_lines(job_ids: list[str]) -> list[str]:
    """Per-hop durations between consecutive job_events, plus end-to-end job latency.

    A hop's duration runs from the commit of the previous stage's transition to the commit of
    this one: publish after commit, broker, waiting in the queue, the stage's two
    transactions and its downstream calls."""
    rows = _query(
        "SELECT job_id, to_status, at FROM job_events WHERE job_id IN :ids ORDER BY job_id, id",
        ids=job_ids,
    )
    events: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for job_id, status, at in rows:
        events[job_id].append((status, _as_dt(at)))
    hops: list[list[float]] = [[] for _ in HOP_NAMES]
    totals: list[float] = []
    skipped = 0
    for seq in events.values():
        if tuple(s for s, _ in seq) != EXPECTED:
            skipped += 1
            continue
        times = [t for _, t in seq]
        for k in range(len(HOP_NAMES)):
            hops[k].append((times[k + 1] - times[k]).total_seconds() * 1000)
        totals.append((times[-1] - times[0]).total_seconds() * 1000)
    lines = [
        f"  per-hop durations from job_events, commit to commit ({len(totals)} completed jobs"
        + (f", {skipped} with another event sequence left out" if skipped else "")
        + "; they include the wait in the queue, which dominates when every job is "
        "submitted at once):"
    ]
    for name, values in zip(HOP_NAMES, hops, strict=True):
        lines.append(f"    {name:<42} {_ms(values)}")
    lines.append(f"    {'job latency (queued -> completed)':<42} {_ms(totals)}")
    return lines


_SUCCEEDED = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] succeeded in ([0-9.e-]+)s")


def task_runtime_lines(slices: list[tuple[Path, int, int]], label: str) -> list[str]:
    """Run time of each task name, from the workers' "Task ... succeeded in Ns" log lines
    written in the timed window: a hop's service time (no queue wait; with a threads pool it
    includes waiting for the GIL)."""
    runtimes: dict[str, list[float]] = defaultdict(list)
    for path, start, end in slices:
        with path.open("rb") as f:
            f.seek(start)
            chunk = f.read(max(end - start, 0)).decode(errors="replace")
        for name, secs in _SUCCEEDED.findall(chunk):
            runtimes[name].append(float(secs) * 1000)
    if not runtimes:
        return [f"  {label}: no task run times found in the worker logs"]
    lines = [f"  {label}, task run times in the timed window (from the worker logs):"]
    for name in sorted(runtimes):
        values = runtimes[name]
        lines.append(f"    {name:<26} {len(values):6d} runs  {_ms(values)}")
    return lines


def tool_call_lines(job_ids: list[str]) -> list[str]:
    """Downstream calls per job and their latency (measured by the workers around the call)."""
    rows = _query(
        "SELECT stage, tool, COUNT(*), AVG(latency_ms), SUM(latency_ms)"
        " FROM tool_calls WHERE job_id IN :ids GROUP BY stage, tool"
        " ORDER BY stage, tool",
        ids=job_ids,
    )
    n = max(len(job_ids), 1)
    total_calls = sum(int(r[2]) for r in rows)
    total_ms = sum(float(r[4]) for r in rows)
    lines = [
        f"  downstream (sandbox) calls: {total_calls / n:.1f} per job, "
        f"{total_ms / n:.1f} ms of HTTP wait per job:"
    ]
    for stage, tool, count, avg, _sum in rows:
        lines.append(
            f"    {stage:<16} {tool:<24} {int(count) / n:4.1f}/job  avg {float(avg):6.1f} ms"
        )
    return lines


def db_activity(dbname: str) -> dict[str, int] | None:
    """PostgreSQL's counters for the bench database (None on SQLite)."""
    from app.core.db import get_engine

    if get_engine().dialect.name != "postgresql":
        return None
    rows = _query(
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted,"
        " tup_updated, tup_deleted FROM pg_stat_database WHERE datname = :db",
        db=dbname,
    )
    if not rows:
        return None
    keys = (
        "commits",
        "rollbacks",
        "rows_returned",
        "rows_fetched",
        "rows_inserted",
        "rows_updated",
        "rows_deleted",
    )
    return dict(zip(keys, (int(v) for v in rows[0]), strict=True))


def db_activity_lines(
    before: dict[str, int] | None, after: dict[str, int] | None, jobs: int
) -> list[str]:
    """Database work per job (pg_stat_database deltas; PostgreSQL flushes them lazily)."""
    if not before or not after:
        return []
    per = {k: (after[k] - before[k]) / max(jobs, 1) for k in after}
    return [
        "  PostgreSQL per job (pg_stat_database, approximate): "
        + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
    ]


def _library(filename: str) -> str:
    """Which package a profiled function belongs to (for the per-library summary)."""
    if filename == "~" or filename.startswith("<"):
        return "C builtins (sockets, locks, json, hashing, ...)"
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        i = parts.index("site-packages")
        top = parts[i + 1] if len(parts) > i + 1 else "?"
        return top.split(".")[0].removesuffix(".py").lstrip("_") or top
    for mine in ("app", "tasks", "tools", "verifiers", "bench"):
        if f"/{mine}/" in filename and "/lib/python" not in filename:
            return f"opsgate {mine}/"
    return "python stdlib"


_STAGE_TASKS = {
    "plan": "plan",
    "verify_proposal": "verify_proposal",
    "execute": "execute",
    "verify_outcome": "verify_outcome",
}


_COUNTED = (
    ("SQL statements", "sqlalchemy/engine/base.py", "execute"),
    ("ORM flushes", "sqlalchemy/orm/session.py", "flush"),
    # The adapters send every downstream request through urllib3's pool (tools/http.py).
    ("HTTP requests", "urllib3/poolmanager.py", "urlopen"),
    ("broker publishes", "kombu/messaging.py", "publish"),
    ("audit appends", "app/audit/chain.py", "append"),
)


def _ncalls(raw: dict[Any, Any], suffix: str, func: str) -> int:
    return sum(
        v[1]
        for (filename, _line, name), v in raw.items()
        if name == func and filename.endswith(suffix)
    )


def profile_lines(folder: Path, clock: str, jobs: int, top: int = 25) -> list[str]:
    """The merged worker profile: per-stage and per-library totals, then the top functions."""
    files = sorted(str(p) for p in folder.glob("prof-*.pstats"))
    if not files:
        return [f"  (no profile files in {folder})"]
    stats = pstats.Stats(files[0])
    for extra in files[1:]:
        stats.add(extra)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    kind = "CPU time of each pool thread" if clock == "cpu" else "wall-clock time"
    n = max(jobs, 1)
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values())
    lines = [
        f"  worker profile ({kind}; task executions only, summed over {len(files)} pool "
        f"threads/processes): {1000 * total / n:.1f} ms per job inside tasks"
    ]
    lines.append(
        "  (cProfile's own overhead inflates these times about 3x against the unprofiled "
        "worker CPU per job above: compare shares)"
    )
    lines.append(
        "  calls per job inside tasks: "
        + ", ".join(
            f"{label} {_ncalls(raw, suffix, func) / n:.1f}" for label, suffix, func in _COUNTED
        )
    )
    lines.append("  per stage task (ms per call):")
    for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in sorted(raw.items()):
        if "/tasks/" in filename and func in _STAGE_TASKS and nc:
            lines.append(f"    {func:<18} {nc:6d} calls  {1000 * ct / nc:7.2f} ms/call")
    by_lib: dict[str, float] = defaultdict(float)
    for (filename, _line, _func), (_cc, _nc, tt, _ct, _callers) in raw.items():
        by_lib[_library(filename)] += tt
    lines.append("  own time by library (ms per job, share):")
    for lib, tt in sorted(by_lib.items(), key=lambda kv: -kv[1])[:15]:
        lines.append(f"    {lib:<48} {1000 * tt / n:7.2f} ms  {100 * tt / max(total, 1e-9):5.1f}%")
    for key, label in (("cumulative", "by cumulative time"), ("tottime", "by own time")):
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.strip_dirs().sort_stats(key).print_stats(top)
        body = buf.getvalue().splitlines()
        start = next((i for i, line in enumerate(body) if line.lstrip().startswith("ncalls")), 0)
        lines.append(f"  --- top {top} {label} ---")
        lines.extend("    " + line for line in body[start:] if line.strip())
    return lines
