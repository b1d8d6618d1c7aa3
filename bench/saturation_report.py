"""Measurements and diagnostics for bench/saturation.py: the critical path of a job (from
tool_calls and the sandbox's request counter), completion times, and where a pool thread's
time goes (from bench/saturation_worker.py's per-task records)."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from bench.report import _as_dt, _query
from bench.saturation_worker import CATEGORIES

# --- the critical path ------------------------------------------------------------------------


@dataclass
class ToolRow:
    """tool_calls of one (stage, tool) over the timed jobs."""

    stage: str
    tool: str
    rows: int
    min_ms: float
    avg_ms: float
    sum_ms: float
    round_trips: int  # sandbox round trips one row stands for


def tool_rows(job_ids: list[str], latency_ms: float) -> list[ToolRow]:
    """tool_calls grouped by stage and tool. A row is one tool call, which may make more than
    one HTTP request (zendesk.add_comment lists the comments to detect an earlier attempt,
    then PUTs): each request waits latency_ms in the sandbox, so the fastest row of a tool
    took at least (its requests x latency_ms) and less than one more latency_ms."""
    rows = _query(
        "SELECT stage, tool, COUNT(*), MIN(latency_ms), AVG(latency_ms), SUM(latency_ms)"
        " FROM tool_calls WHERE job_id IN :ids GROUP BY stage, tool ORDER BY stage, tool",
        ids=job_ids,
    )
    out = []
    for stage, tool, count, lo, avg, total in rows:
        trips = max(1, math.floor(float(lo) / latency_ms)) if latency_ms > 0 else 1
        out.append(ToolRow(stage, tool, int(count), float(lo), float(avg), float(total), trips))
    return out


def hop_shape(job_ids: list[str], rows: list[ToolRow]) -> tuple[list[tuple[str, int]], int, int]:
    """The most common sequence of (stage, sandbox round trips) hops of a job: its tool_calls in
    order, consecutive calls of the same stage making one hop. Returns (shape, jobs with that
    shape, jobs seen)."""
    trips = {(r.stage, r.tool): r.round_trips for r in rows}
    calls = _query(
        "SELECT job_id, stage, tool FROM tool_calls WHERE job_id IN :ids ORDER BY job_id, id",
        ids=job_ids,
    )
    per_job: dict[str, list[list[Any]]] = defaultdict(list)
    for job_id, stage, tool in calls:
        hops = per_job[job_id]
        n = trips.get((stage, tool), 1)
        if hops and hops[-1][0] == stage:
            hops[-1][1] += n
        else:
            hops.append([stage, n])
    shapes = Counter(tuple((s, n) for s, n in hops) for hops in per_job.values())
    if not shapes:
        return [], 0, 0
    shape, count = shapes.most_common(1)[0]
    return list(shape), count, len(per_job)


def completion_times(job_ids: list[str]) -> list[float]:
    """Epoch seconds at which each of these jobs reached `completed`, sorted."""
    rows = _query(
        "SELECT at FROM job_events WHERE to_status = 'completed' AND job_id IN :ids",
        ids=job_ids,
    )
    return sorted(_as_dt(r[0]).timestamp() for r in rows)


# --- where a pool thread's time goes ------------------------------------------------------


def in_window(records: list[dict[str, Any]], t0: float, end: float) -> list[dict[str, Any]]:
    """Task records that started inside the timed window."""
    return [r for r in records if t0 <= r["t0"] <= end]


def _ms(v: float) -> str:
    return f"{1000 * v:7.1f}"


COUNT_LABELS = (
    ("http", "HTTP requests"),
    ("sql", "SQL statements"),
    ("commit", "commits/rollbacks"),
    ("checkout", "pool checkouts"),
    ("publish", "publishes"),
    ("redis", "other Redis commands"),
    ("model", "model calls"),
)


def thread_budget_lines(
    records: list[dict[str, Any]],
    threads: int,
    wall: float,
    jobs: int,
    ideal_s: float,
    tool_http_ms: float,
) -> list[str]:
    """A pool thread-second budget per completed job: what the threads had (threads x wall /
    jobs) and what it went to. At the ideal, every thread-second is a sandbox sleep."""
    n = max(jobs, 1)
    avail = threads * wall / n
    total = {k: sum(r[k] for r in records) / n for k in ("wall", "cpu", *CATEGORIES)}
    http_extra = total["http"] - ideal_s
    db = total["sql"] + total["commit"] + total["checkout"]
    other = total["wall"] - sum(total[k] for k in CATEGORIES)
    outside = avail - total["wall"]

    def row(label: str, v: float) -> str:
        return f"    {label:<62} {_ms(v)} ms  {100 * v / avail:5.1f}%"

    lines = [
        f"  pool thread time per completed job ({threads} threads x {wall:.1f}s / {jobs} jobs; "
        "from the timing hooks of bench/saturation_worker.py):",
        row("thread time available per job", avail),
        row("ideal: the sandbox's injected latency (the critical path)", ideal_s),
        row("HTTP beyond the injected latency (sandbox work, sockets, GIL)", http_extra),
        row("database: statements", total["sql"]),
        row("database: commit/rollback", total["commit"]),
        row("database: pool checkout (incl. the socket check, waits)", total["checkout"]),
        row("Redis: publishing the next stage (kombu)", total["publish"]),
        row("Redis: other commands (breaker, kill switch, limits)", total["redis"]),
        row("model calls (openai SDK; the scripted server's delay included)", total["model"]),
        row("in tasks, untimed: Python CPU, GIL waits, logging, audit hashing", other),
        row("outside tasks: Celery fetch/ack/events, idle at ramp-up and drain", outside),
        f"    (in-task wall {_ms(total['wall']).strip()} ms/job, of which the threads' own CPU "
        f"{_ms(total['cpu']).strip()} ms; database total {_ms(db).strip()} ms vs HTTP total "
        f"{_ms(total['http']).strip()} ms per job; tool_calls.latency_ms adds up to "
        f"{tool_http_ms:.1f} ms per job)",
        "    timed regions per job: "
        + ", ".join(
            f"{label} {sum(r.get(k + '_n', 0) for r in records) / n:.1f}"
            for k, label in COUNT_LABELS
        ),
    ]
    return lines


def task_table_lines(records: list[dict[str, Any]], jobs: int) -> list[str]:
    """Per task name: runs per job and the average split of one run."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_name[r["name"]].append(r)
    head = "    {:<24} {:>6} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}".format(
        "task",
        "/job",
        "wall",
        "http",
        "sql",
        "commit",
        "chkout",
        "publish",
        "redis",
        "model",
        "other",
        "own CPU",
    )
    lines = [
        "  per task run (ms, averages over the timed window; wall = http + sql + ... + other; "
        "own CPU = the thread's CPU time, inside those):",
        head,
    ]
    for name in sorted(by_name):
        rs = by_name[name]
        avg = {k: statistics.fmean(r[k] for r in rs) for k in ("wall", "cpu", *CATEGORIES)}
        other = avg["wall"] - sum(avg[k] for k in CATEGORIES)
        lines.append(
            "    {:<24} {:>6.2f} {} {} {} {} {} {} {} {} {} {}".format(
                name.removeprefix("opsgate."),
                len(rs) / max(jobs, 1),
                _ms(avg["wall"]).rjust(8),
                _ms(avg["http"]),
                _ms(avg["sql"]),
                _ms(avg["commit"]),
                _ms(avg["checkout"]),
                _ms(avg["publish"]),
                _ms(avg["redis"]),
                _ms(avg["model"]),
                _ms(other),
                _ms(avg["cpu"]).rjust(8),
            )
        )
    lines.append("  per task run (counts: " + ", ".join(lbl for _, lbl in COUNT_LABELS) + "):")
    for name in sorted(by_name):
        rs = by_name[name]
        lines.append(
            f"    {name.removeprefix('opsgate.'):<24} "
            + "  ".join(
                f"{statistics.fmean(r.get(k + '_n', 0) for r in rs):5.1f}" for k, _ in COUNT_LABELS
            )
        )
    return lines


def tool_lines(rows: list[ToolRow], jobs: int, latency_ms: float) -> list[str]:
    """Downstream calls per job, with the round trips each stands for and its latency."""
    n = max(jobs, 1)
    lines = [
        "  downstream calls (tool_calls; latency measured by the worker around the call):",
        f"    {'stage':<16} {'tool':<24} {'rows/job':>8} {'trips':>5} {'avg ms':>8} "
        f"{'min ms':>7} {'avg - trips x latency':>22}",
    ]
    for r in rows:
        lines.append(
            f"    {r.stage:<16} {r.tool:<24} {r.rows / n:8.2f} {r.round_trips:5d} "
            f"{r.avg_ms:8.1f} {r.min_ms:7.1f} {r.avg_ms - r.round_trips * latency_ms:18.1f} ms"
        )
    return lines


def bare_budget_lines(threads: int, wall: float, chains: int, sleep_s: float) -> list[str]:
    n = max(chains, 1)
    avail = threads * wall / n
    return [
        f"  bare side, pool thread time per chain ({threads} threads x {wall:.1f}s / {chains}):",
        f"    {'available':<40} {_ms(avail)} ms",
        f"    {'sleeping (the critical path)':<40} {_ms(sleep_s)} ms  "
        f"{100 * sleep_s / avail:5.1f}%",
        f"    {'Celery + Redis per chain, ramp, drain':<40} {_ms(avail - sleep_s)} ms  "
        f"{100 * (avail - sleep_s) / avail:5.1f}%",
    ]


# --- table scans ----------------------------------------------------------------------------


def table_stats() -> dict[str, tuple[int, int, int, int]] | None:
    """Per table of the run's database: (seq_scan, seq_tup_read, idx_scan, idx_tup_fetch)."""
    from app.core.db import get_engine

    if get_engine().dialect.name != "postgresql":
        return None
    rows = _query(
        "SELECT relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0),"
        " COALESCE(idx_tup_fetch, 0) FROM pg_stat_user_tables"
    )
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}


def table_scan_lines(
    before: dict[str, tuple[int, int, int, int]] | None,
    after: dict[str, tuple[int, int, int, int]] | None,
    jobs: int,
    top: int = 8,
) -> list[str]:
    """Tables by rows read through sequential scans per job (pg_stat_user_tables deltas): a
    figure that grows with the table's size means a query without a usable index."""
    if not before or not after:
        return []
    n = max(jobs, 1)
    deltas: list[tuple[str, float, float, float, float]] = []
    for name, (ss, st, ix, ixf) in after.items():
        b = before.get(name, (0, 0, 0, 0))
        deltas.append((name, (ss - b[0]) / n, (st - b[1]) / n, (ix - b[2]) / n, (ixf - b[3]) / n))
    deltas.sort(key=lambda d: -d[2])
    lines = [
        "  PostgreSQL tables per job (pg_stat_user_tables; seq rows read grows with the table "
        "when a query has no usable index):",
        f"    {'table':<24} {'seq scans':>9} {'seq rows read':>13} {'idx scans':>9} "
        f"{'idx rows':>9}",
    ]
    for name, scans, read, iscans, ifetched in deltas[:top]:
        lines.append(f"    {name:<24} {scans:9.1f} {read:13.1f} {iscans:9.1f} {ifetched:9.1f}")
    return lines


def db_sessions(dbname: str) -> dict[str, float] | None:
    """PostgreSQL 14+ session counters of the run's database (None where unavailable)."""
    from app.core.db import get_engine

    if get_engine().dialect.name != "postgresql":
        return None
    try:
        rows = _query(
            "SELECT sessions, active_time, idle_in_transaction_time FROM pg_stat_database"
            " WHERE datname = :db",
            db=dbname,
        )
    except Exception:  # older servers have no such columns
        return None
    if not rows:
        return None
    return {
        "sessions": float(rows[0][0]),
        "active_ms": float(rows[0][1]),
        "idle_in_tx_ms": float(rows[0][2]),
    }


def db_session_lines(
    before: dict[str, float] | None, after: dict[str, float] | None, jobs: int, wall: float
) -> list[str]:
    """New database connections and server-side statement time per job."""
    if not before or not after:
        return []
    n = max(jobs, 1)
    d = {k: after[k] - before[k] for k in after}
    return [
        f"  PostgreSQL sessions: {d['sessions']:.0f} new connections in the window "
        f"({d['sessions'] / n:.2f} per job, {d['sessions'] / max(wall, 1e-9):.1f}/s); "
        f"server time executing statements {d['active_ms'] / n:.1f} ms per job, idle in "
        f"transaction {d['idle_in_tx_ms'] / n:.1f} ms per job (counted when a session ends "
        "or goes idle, so approximate)"
    ]


def ceiling_lines(
    worker_cpu: float,
    machine_cpu: float,
    wall: float,
    jobs: int,
    workers: int,
    critical_s: float,
    threads: int,
) -> list[str]:
    """What the CPU allows, next to what the ideal asks for."""
    import os

    n = max(jobs, 1)
    per_job = 1000 * worker_cpu / n
    machine_per_job = 1000 * machine_cpu / n
    cores = os.cpu_count() or 1
    busy_core = worker_cpu / max(wall, 1e-9) / workers
    gil = workers * 1000 / per_job if per_job else float("inf")
    machine = cores * 1000 / machine_per_job if machine_per_job else float("inf")
    ideal = threads / critical_s if critical_s else float("inf")
    return [
        "  CPU ceilings:",
        f"    worker process CPU {per_job:.1f} ms per job; each of the {workers} worker "
        f"process(es) was busy {100 * busy_core:.0f}% of one core. Python code in one process runs "
        f"on one core at a time (the GIL), so {workers} process(es) top out near "
        f"{gil:.1f} jobs/s, whatever the thread count",
        f"    whole machine busy {machine_per_job:.1f} ms per job (workers, sandbox, PostgreSQL, "
        f"Redis, the rest): {cores} cores top out near {machine:.1f} jobs/s",
        f"    the ideal asks for {ideal:.1f} jobs/s = {ideal * per_job / 1000:.2f} cores of worker "
        f"CPU alone",
    ]


def statement_lines(statements: dict[str, list[Any]], jobs: int, top: int = 15) -> list[str]:
    """The SQL statements run inside tasks, most frequent first (per job, over every job the
    workers ran, warm-up included)."""
    if not statements:
        return []
    n = max(jobs, 1)
    total = sum(c for c, _ in statements.values())
    lines = [
        f"  SQL statements inside tasks: {total / n:.1f} per job in {len(statements)} shapes; "
        f"the {min(top, len(statements))} most frequent (per job, avg ms as the worker waited):"
    ]
    for key, (count, secs) in sorted(statements.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"    {count / n:5.1f}/job {1000 * secs / max(count, 1):6.2f} ms  {key}")
    return lines
