"""Benchmark: opsgate's orchestration latency at low load, one job at a time, against a bare
6-hop Celery chain's end-to-end latency measured the same way in the same run (issue 20).

What it measures
  1. bare chain: chains of 6 no-op tasks (bench/bare.py, opsgate's delivery settings, the
     stage queues) on one worker of the default shape (threads pool, concurrency 8), sent one
     at a time: end-to-end latency = the last task's finish time (it records it in Redis) minus
     the time just before `apply_async`.
  2. pipeline: `support_refund` jobs (rules planner, the sandbox with no injected latency,
     PostgreSQL) submitted one at a time through `app.intake.submissions.submit` to one
     `opsgate worker` of the default shape; each is waited for (`completed`) before the next.
     Orchestration overhead of a job = its `completed` event minus its `queued` event (the
     accept's commit), MINUS its downstream waits (tool_calls.latency_ms) and model waits
     (model_calls.latency_ms; none with the rules planner). Per hop (plan, verify_proposal,
     execute, verify_outcome, execute, verify_outcome) the same, between consecutive
     job_events, the tool calls recorded inside the hop subtracted.
  3. ratio = pipeline overhead p50 / bare chain p50 (target <= 2), and the same at p95.
  What bounds it, per hop (medians), from the worker's timing hooks (bench/saturation_worker.py,
  one task at a time so every task record belongs to the job in flight):
    dispatch  the previous event's commit -> this task's start (after-commit publish, Redis,
              the worker's fetch and the pool handing it to a thread)
    db        the task's SQL statements, commits and pool checkouts
    redis     the publish of the next stage and other Redis commands
    http      downstream calls (subtracted from the overhead, shown for reference)
    other     the rest of the task (Python, logging, audit hashing)
  plus whether a relay or a poll sits on the path (the outbox relay is a beat task; the bench
  starts no beat, so every hop it measures is published after commit by the stage itself).

The last line is one JSON object; exit 0 when every job completed and every bare chain
finished, 1 otherwise, 2 on an error. It starts and always stops its own sandbox and worker
processes, creates a fresh PostgreSQL database (dropped at the end), and FLUSHes the Redis
database it is given at the start and the end (it refuses one that holds keys unless
--force-flush).

    .venv/bin/python -m bench.latency [--jobs 50] [--bare-chains 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as `python bench/latency.py`
    sys.path.insert(0, str(ROOT))

from bench import procs, report  # noqa: E402
from bench.pipeline import (  # noqa: E402
    QUEUES,
    SETTLED,
    Run,
    applied_refunds,
    prepare,
    start_sandbox,
    start_workers,
    submission,
)
from bench.procs import Child, wait_until  # noqa: E402
from bench.report import HOP_NAMES, _as_dt, _query  # noqa: E402

TARGET = 2.0
HOP_TASKS = ("plan", "verify_proposal", "execute", "verify_outcome", "execute", "verify_outcome")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description="Measure opsgate's orchestration overhead per support_refund job (accept to "
        "completed, minus downstream and model waits), one job at a time, against a bare 6-hop "
        "Celery chain's end-to-end latency, one at a time, same run, same Redis. Target: p50 "
        f"<= {TARGET:g}x the bare chain. The last output line is a JSON object.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--jobs", type=int, default=50, help="timed pipeline jobs, one at a time")
    p.add_argument("--bare-chains", type=int, default=200, help="timed bare chains, one at a time")
    p.add_argument("--warmup", type=int, default=5, help="untimed jobs/chains first, each side")
    p.add_argument(
        "--concurrency", type=int, default=8, help="threads of the one worker, both sides"
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="broker for both sides; this Redis database is FLUSHed at start and end",
    )
    p.add_argument(
        "--force-flush",
        action="store_true",
        help="flush --redis-url even if it holds keys (it may be someone else's)",
    )
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to create (and drop) the run's database with",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one job")
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, records)")
    args = p.parse_args(argv)
    if min(args.jobs, args.bare_chains, args.concurrency) < 1 or args.warmup < 0:
        p.error("--jobs, --bare-chains and --concurrency must be >= 1, --warmup >= 0")
    if args.jobs + args.warmup > 10_000:
        p.error("--jobs + --warmup must be <= 10000")
    if args.timeout <= 0:
        p.error("--timeout must be > 0")
    # What bench.pipeline's helpers read: one worker of the default shape, PostgreSQL.
    args.workers = 1
    args.pool = "threads"
    args.database = "postgresql"
    args.profile_jobs = 0
    args.profile_clock = "cpu"
    return args


def say(line: str = "") -> None:
    print(line, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of values; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50_p95(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values) if values else 0:7.2f} ms  p95 {pct(values, 0.95):7.2f} ms"
    )


# --- the bare chain ---------------------------------------------------------------------------


def run_bare(run: Run, env: dict[str, str]) -> list[float]:
    """End-to-end ms of each timed bare chain, sent one at a time."""
    from bench import bare

    args, r = run.args, run.redis_client
    workers = start_workers(run.children, "bare", args, env, run.tmp, "lat", bare.app)
    latencies: list[float] = []
    try:
        for n in range(args.warmup + args.bare_chains):
            r.delete(bare.DONE_KEY)
            t0 = time.time()
            bare.bare_chain(n).apply_async()
            # BLPOP wakes as soon as the last hop pushes its finish time (no poll interval).
            got = r.blpop([bare.DONE_KEY], timeout=args.timeout)
            if got is None:
                run.children.check_alive(workers)
                raise TimeoutError(f"bare chain {n} did not finish in {args.timeout:g}s")
            if n >= args.warmup:
                latencies.append(1000 * (float(got[1]) - t0))
    finally:
        for w in workers:
            run.children.stop(w)
    return latencies


# --- the pipeline -----------------------------------------------------------------------------


def opsgate_worker(run: Run, env: dict[str, str], records: Path) -> list[Child]:
    """One opsgate worker of the default shape, with bench/saturation_worker.py's timing hooks."""
    from app.celery_app import celery_app

    args = run.args
    name = "latency-opsgate@bench"
    argv = [
        sys.executable,
        "-m",
        "bench.saturation_worker",
        str(records),
        "worker",
        "--queues",
        QUEUES,
        "--pool",
        args.pool,
        "--concurrency",
        str(args.concurrency),
        "--hostname",
        name,
    ]
    child = run.children.spawn("opsgate worker", argv, env, run.tmp / "opsgate-worker.log")

    def pong() -> bool:
        return bool(celery_app.control.ping(destination=[name], timeout=0.5))

    wait_until(
        pong,
        90,
        "the opsgate worker to answer ping",
        0.3,
        lambda: run.children.check_alive([child]),
    )
    return [child]


def wait_job(job_id: str, timeout: float, alive: Any) -> str:
    """Poll the job's status until it settles (every 5 ms: the poll only delays the next
    submission; the latency itself comes from job_events)."""
    status = ""

    def settled() -> bool:
        nonlocal status
        status = next(iter(report.status_counts([job_id])), "")
        return status in SETTLED

    wait_until(settled, timeout, f"job {job_id}", interval=0.005, alive=alive)
    return status


def run_pipeline(
    run: Run, env: dict[str, str], cases: dict[str, list[Any]], records: Path
) -> list[str]:
    """Submit each job, wait for it, then the next; returns the timed job ids."""
    from app.intake import submissions

    workers = opsgate_worker(run, env, records)
    alive = lambda: run.children.check_alive(workers)  # noqa: E731
    timed: list[str] = []
    for label, batch in (("w", cases["warmup"]), ("t", cases["timed"])):
        for case in batch:
            job_id, created = submissions.submit(
                submission(run.run_id, label, case), submitted_by="bench"
            )
            if not created:
                raise RuntimeError(f"ticket {case.ticket_id} was already submitted in this run")
            status = wait_job(job_id, run.args.timeout, alive)
            if label == "t":
                timed.append(job_id)
            if status != "completed":
                say(f"bench: job {job_id} ended {status}: {report.escalation_reasons([job_id])}")
    for w in workers:
        run.children.stop(w)  # warm shutdown: the hooks' files are complete
    return timed


@dataclass
class JobTiming:
    """One completed job: its events, and per hop the wall, downstream and model ms."""

    job_id: str
    events: list[datetime]
    hop_wall: list[float]
    hop_http: list[float]
    hop_model: list[float]

    @property
    def total(self) -> float:
        return (self.events[-1] - self.events[0]).total_seconds() * 1000

    @property
    def overhead(self) -> float:
        return self.total - sum(self.hop_http) - sum(self.hop_model)


def job_timings(job_ids: list[str]) -> list[JobTiming]:
    """Completed jobs with the expected event sequence, waits assigned to hops by time."""
    events: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for job_id, status, at in _query(
        "SELECT job_id, to_status, at FROM job_events WHERE job_id IN :ids ORDER BY job_id, id",
        ids=job_ids,
    ):
        events[job_id].append((status, _as_dt(at)))
    waits: dict[str, list[tuple[str, datetime, float, str]]] = defaultdict(list)
    for table in ("tool_calls", "model_calls"):
        for job_id, stage, at, ms in _query(
            f"SELECT job_id, stage, at, latency_ms FROM {table} WHERE job_id IN :ids", ids=job_ids
        ):
            waits[job_id].append((str(stage), _as_dt(at), float(ms), table))
    out = []
    for job_id in job_ids:
        seq = events.get(job_id, [])
        if tuple(s for s, _ in seq) != report.EXPECTED:
            continue
        times = [t for _, t in seq]
        hops = len(times) - 1
        http, model = [0.0] * hops, [0.0] * hops
        for stage, at, ms, table in waits[job_id]:
            # A wait belongs to a hop of its stage: the last one that began before its record
            # (the record is written in the hop's own commit, so it may carry a time a little
            # after the hop's closing event, never before the hop began).
            mine = [i for i in range(hops) if HOP_TASKS[i] == stage] or list(range(hops))
            k = next((i for i in reversed(mine) if times[i] <= at), mine[0])
            (http if table == "tool_calls" else model)[k] += ms
        wall = [(times[i + 1] - times[i]).total_seconds() * 1000 for i in range(hops)]
        out.append(JobTiming(job_id, times, wall, http, model))
    return out


def bounds(timings: list[JobTiming], records: list[dict[str, Any]]) -> list[list[dict[str, float]]]:
    """Per hop, per job: dispatch gap, db, redis, http and other ms from the task records that
    started inside the hop (one job at a time, so they are this job's)."""
    per_hop: list[list[dict[str, float]]] = [[] for _ in HOP_TASKS]
    starts = sorted(records, key=lambda r: r["t0"])
    for t in timings:
        for k in range(len(HOP_TASKS)):
            lo, hi = t.events[k].timestamp(), t.events[k + 1].timestamp()
            mine = [r for r in starts if lo <= r["t0"] <= hi and r["name"].endswith(HOP_TASKS[k])]
            if not mine:
                continue
            first = mine[0]
            db = sum(r["sql"] + r["commit"] + r["checkout"] for r in mine)
            redis = sum(r["publish"] + r["redis"] for r in mine)
            http = sum(r["http"] + r.get("model", 0.0) for r in mine)
            wall = sum(r["wall"] for r in mine)
            per_hop[k].append(
                {
                    "dispatch": 1000 * (first["t0"] - lo),
                    "db": 1000 * db,
                    "redis": 1000 * redis,
                    "http": 1000 * http,
                    "other": 1000 * (wall - db - redis - http),
                    "tasks": float(len(mine)),
                }
            )
    return per_hop


def relay_note() -> str:
    """What the run's settings say about relays and polling on the hop path."""
    from app.celery_app import celery_app

    conf = celery_app.conf
    return (
        f"worker_prefetch_multiplier {conf.worker_prefetch_multiplier}, "
        f"broker_transport_options {conf.broker_transport_options}, no beat running (so no "
        "outbox relay or reaper on the path: each hop is published after commit by the stage)"
    )


# --- the run ----------------------------------------------------------------------------------


def measure(run: Run) -> int:
    """Both sides, the checks, the breakdown; prints the JSON line; returns the exit code."""
    from bench.saturation_worker import read_records

    args = run.args
    env, sandbox_url, cases = prepare(run)
    records = run.tmp / "records"

    say("bare chain: one at a time ...")
    bare = run_bare(run, env)
    say(f"bare chain: {len(bare)} chains, end-to-end {p50_p95(bare)}")
    run.redis_client.flushdb()
    from bench.pipeline import SENTINEL

    run.redis_client.set(SENTINEL, run.run_id)

    start_sandbox(
        run.children, env, run.tmp, int(sandbox_url.rsplit(":", 1)[1]), run.tmp / "sandbox.db"
    )
    say("pipeline: one job at a time ...")
    job_ids = run_pipeline(run, env, cases, records)
    counts = report.status_counts(job_ids)
    timings = job_timings(job_ids)
    refunds = applied_refunds(sandbox_url, {c.charge_id for c in cases["timed"]})
    overhead = [t.overhead for t in timings]
    total = [t.total for t in timings]
    waits = [sum(t.hop_http) + sum(t.hop_model) for t in timings]
    say(
        f"pipeline: {len(timings)}/{len(job_ids)} jobs completed; accept -> completed "
        f"{p50_p95(total)}, "
        f"downstream + model waits {p50_p95(waits)}"
    )
    say(f"pipeline: orchestration overhead (accept -> completed minus waits) {p50_p95(overhead)}")
    b50, b95 = statistics.median(bare) if bare else 0.0, pct(bare, 0.95)
    o50, o95 = statistics.median(overhead) if overhead else 0.0, pct(overhead, 0.95)
    ratio = o50 / b50 if b50 else 0.0
    ratio95 = o95 / b95 if b95 else 0.0
    say(
        f"ratio: overhead p50 / bare p50 = {ratio:.2f} (target <= {TARGET:g}); at p95 {ratio95:.2f}"
    )

    say()
    say("per hop (ms; overhead = hop wall between its events minus the downstream waits inside):")
    say(f"    {'hop':<42} {'overhead p50':>12} {'p95':>8} {'wall p50':>9} {'waits p50':>9}")
    per_hop_overhead: list[dict[str, float]] = []
    for k, name in enumerate(HOP_NAMES):
        ov = [t.hop_wall[k] - t.hop_http[k] - t.hop_model[k] for t in timings]
        wall = [t.hop_wall[k] for t in timings]
        w = [t.hop_http[k] + t.hop_model[k] for t in timings]
        med = statistics.median(ov) if ov else 0.0
        per_hop_overhead.append({"p50": round(med, 2), "p95": round(pct(ov, 0.95), 2)})
        say(
            f"    {name:<42} {med:12.2f} {pct(ov, 0.95):8.2f} "
            f"{statistics.median(wall) if wall else 0:9.2f} {statistics.median(w) if w else 0:9.2f}"
        )
    say()
    say(
        "what bounds it, per hop (medians, ms; from the worker's timing hooks): dispatch = "
        "previous commit -> task start (publish after commit, Redis, fetch, pool), db = SQL + "
        "commits + pool checkouts, redis = publish + other commands, http = downstream calls"
    )
    hop_bounds = bounds(timings, read_records(records) if records.exists() else [])
    keys = ("dispatch", "db", "redis", "http", "other", "tasks")
    say(f"    {'hop':<42} " + " ".join(f"{k:>9}" for k in keys))
    bound_summary: dict[str, float] = dict.fromkeys(keys[:-1], 0.0)
    for hop_name, rows in zip(HOP_NAMES, hop_bounds, strict=True):
        mid = {key: statistics.median([r[key] for r in rows]) if rows else 0.0 for key in keys}
        for key in keys[:-1]:
            bound_summary[key] += mid[key]
        say(f"    {hop_name:<42} " + " ".join(f"{mid[key]:9.2f}" for key in keys))
    say(
        "    sum of medians over the hops: "
        + ", ".join(f"{k} {v:.1f}" for k, v in bound_summary.items())
    )
    say(f"  settings on the path: {relay_note()}")

    valid = (
        len(bare) == args.bare_chains
        and counts.get("completed", 0) == len(job_ids) == args.jobs
        and len(timings) == args.jobs
        and refunds == args.jobs
    )
    result = {
        "metric": "latency_overhead_vs_bare_chain",
        "ratio": round(ratio, 3),
        "ratio_p95": round(ratio95, 3),
        "target": TARGET,
        "overhead_p50_ms": round(o50, 2),
        "overhead_p95_ms": round(o95, 2),
        "bare_p50_ms": round(b50, 2),
        "bare_p95_ms": round(b95, 2),
        "job_p50_ms": round(statistics.median(total), 2) if total else None,
        "waits_p50_ms": round(statistics.median(waits), 2) if waits else None,
        "per_hop_overhead_ms": per_hop_overhead,
        "bounds_ms": {k: round(v, 2) for k, v in bound_summary.items()},
        "jobs": args.jobs,
        "bare_chains": args.bare_chains,
        "completed": counts.get("completed", 0),
        "stripe_refunds_applied": refunds,
        "concurrency": args.concurrency,
        "valid": valid,
        "run_seconds": round(time.monotonic() - run.started, 1),
    }
    run.children.stop_all()
    say()
    print(json.dumps(result), flush=True)
    return 0 if valid else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; always clean up what it started."""
    return procs.guarded(Run(parse_args(argv)), measure, "opsgate-latency")


if __name__ == "__main__":
    sys.exit(main())
