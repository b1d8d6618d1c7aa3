"""Benchmark: how close opsgate's worker pool gets to its ideal throughput when downstream
calls are slow (issue 4), next to a bare Celery threads pool in the same run.

Set-up
  The sandbox answers every downstream request after --sandbox-latency-ms (default 50 ms,
  `POST /_sandbox/faults {"system": "*", "latency_ms": 50}`). In the default profile the
  planner is the deterministic rules tier and no job calls a model, so --model-latency-ms is
  accepted, reported as "not in the critical path", and changes nothing.
  `--profile production` is the fleet as it runs in production: every downstream request
  held 200 ms, the planner and the soft check's judge going through the model tier
  (support_refund in the router's skip_rules) to the sandbox's scripted OpenAI-compatible
  server answering each call in 1000 ms (bench/saturation_model.py scripts a valid plan per
  case), and 2 worker processes x 16 threads (concurrency 32). Any of these flags given
  explicitly wins over the profile's value. It also samples each worker process's VmRSS
  (and its pool children's) every 0.5 s during the timed window (target <= 150 MB).

What it measures
  1. jobs/s: `support_refund` jobs (refundable tickets made by `POST /_sandbox/refund_cases`)
     submitted through `app.intake.submissions.submit` and run by one `opsgate worker --pool threads
     --concurrency C` process (or --workers N of them) against PostgreSQL, Redis and the
     sandbox, until every job is `completed`. The clock runs from the first submit to the
     last job's `completed` event; the bench submits far faster than the workers finish, so
     the queue never runs dry (its own intake CPU shows in the CPU table). --preload loads
     the jobs as a backlog first instead (workers told to stop consuming the entry queue,
     jobs submitted, queue released, clock started); on this machine that costs the bare
     pool ~8% of its ratio (0.88 against 0.96, measured), so it is not the default.
  2. the ideal: C x workers / critical path, where the critical path of one job is the sum of
     the sandbox round trips it makes in sequence, each costing the injected latency, plus
     (production profile) its model calls, each costing the model latency (counted by the
     scripted server, cross-checked with the model_calls table). The
     round trips are measured, not assumed: the sandbox counts every request it delays (the
     latency fault is set with a huge `count`, whose `remaining` goes down by one per
     request), divided by the jobs; tool_calls gives the same figure per stage (one row is one
     tool call; zendesk.add_comment makes two requests, a comment listing to detect an earlier
     attempt and the PUT, so the rows alone undercount by one per job).
  3. ratio = jobs/s / ideal (target 0.9).
  4. the bare side, same run, same Redis: as many Celery workers, threads pool, same concurrency,
     running chains of sleeps with the job's measured hop shape (one hop per stage hop, each
     sleeping that stage's round trips x latency), with opsgate's delivery settings, loaded
     and timed the same way: the ratio a bare pool reaches on this machine for the same
     critical path (DESIGN.md notes 0.98 for a threads pool of 50 running 3 x 100 ms sleeps).
  Below the target (or with --explain) it prints where the time goes: a pool thread-time
  budget per job (database statements, commits, pool checkouts, Redis publishes and other
  commands, HTTP beyond the injected latency, untimed Python/GIL, time outside tasks), the
  same per task, per-hop durations from job_events, tool_calls latencies, CPU per
  component, database work per job. The timing hooks come from bench/saturation_worker.py
  (the `opsgate worker` CLI with a few wrappers; --plain-workers runs it without them).

The last output line is one JSON object; exit status 0 when every job completed with exactly
one applied refund each and every bare chain finished, 1 otherwise, 2 on an error. It starts
and always stops its own sandbox and worker processes, creates a fresh PostgreSQL database
(dropped at the end), and FLUSHes the Redis database it is given at the start and the end
(it refuses one that holds keys unless --force-flush, and stops with a clear error if
something else flushes it mid-run).

    .venv/bin/python -m bench.saturation [--concurrency 16] [--jobs N] [--workers 1]
    .venv/bin/python -m bench.saturation --profile production [--workers 4 --concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as `python bench/saturation.py`
    sys.path.insert(0, str(ROOT))

from bench import procs, report  # noqa: E402
from bench import saturation_model as sm  # noqa: E402
from bench import saturation_report as sr  # noqa: E402
from bench.pipeline import (  # noqa: E402
    QUEUES,
    applied_refunds,
    apply_env_here,
    create_database,
    free_port,
    groups,
    log_sizes,
    log_slices,
    opsgate_env,
    run_profile,
    start_sandbox,
    wait_settled,
)
from bench.procs import (  # noqa: E402
    Child,
    Children,
    RssSampler,
    cpu_report,
    cpu_snapshot,
    other_load,
    wait_until,
)
from bench.saturation_run import SatRun  # noqa: E402

TARGET = 0.9
RSS_TARGET_MB = 150.0
COUNTER = 10**12  # the latency fault's `count`: never runs out, counts requests down
MODEL_NOTE = (
    "not in the critical path (default profile): the planner is the deterministic rules tier, "
    "no job calls a model; --profile production plans through the model tier"
)
# What each profile sets unless the flag is given: sandbox latency, model latency (None: no
# model in the path), worker processes, threads per worker.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {
        "sandbox_latency_ms": 50.0,
        "model_latency_ms": None,
        "workers": 1,
        "concurrency": 16,
    },
    "production": {
        "sandbox_latency_ms": 200.0,
        "model_latency_ms": 1000.0,
        "workers": 2,
        "concurrency": 16,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.saturation",
        description="Measure completed support_refund jobs/s at a worker concurrency with the "
        "sandbox at a fixed latency per request, divide by the ideal (threads / critical-path "
        "latency, the critical path = sandbox round trips per job x latency), and compare with "
        "a bare Celery threads pool running the same critical path as sleeps. Target ratio "
        f">= {TARGET}. The last output line is a JSON object.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default="default",
        help="default: rules planner, sandbox 50 ms, 1 worker x 16 threads; production: model "
        "tier planning against the scripted server at 1000 ms a call, sandbox 200 ms, "
        "2 workers x 16 threads (flags given explicitly win)",
    )
    p.add_argument(
        "--concurrency", type=int, default=None, help="threads per worker, both sides (profile)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="timed jobs (and bare chains); default 20 x concurrency x workers, about 10 s "
        "of ideal run time per side (the whole run then takes about a minute)",
    )
    p.add_argument("--workers", type=int, default=None, help="opsgate worker processes (profile)")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed jobs/chains first (connections, imports); default = the thread count",
    )
    p.add_argument(
        "--sandbox-latency-ms",
        type=float,
        default=None,
        help="latency the sandbox adds to every downstream request (profile: 50 or 200)",
    )
    p.add_argument(
        "--model-latency-ms",
        type=float,
        default=None,
        help="production profile: the scripted model server's answer time per call (1000); "
        "default profile: " + MODEL_NOTE + ", so it is only reported",
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="broker for both sides; this Redis database is FLUSHed at start and end",
    )
    p.add_argument(
        "--force-flush",
        action="store_true",
        help="flush --redis-url even if it holds keys (by default a non-empty database is "
        "refused: another process may be using it)",
    )
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to create (and drop) the run's database with",
    )
    p.add_argument(
        "--plain-workers",
        action="store_true",
        help="run plain `python -m app worker` (no timing hooks; the breakdown then lacks the "
        "per-task split)",
    )
    p.add_argument(
        "--preload",
        action="store_true",
        help="load the timed jobs/chains as a backlog (entry queue held, then released) "
        "before the clock starts, instead of submitting them with the clock running",
    )
    p.add_argument(
        "--profile-jobs",
        type=int,
        default=0,
        help="after the timed run, an extra untimed batch of this many jobs with every task "
        "under cProfile (CPU clock; bench/profiled_worker.py), printed with the breakdown",
    )
    p.add_argument("--skip-bare", action="store_true", help="measure the pipeline side only")
    p.add_argument(
        "--explain", action="store_true", help="print where the time goes even at the target"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait per phase")
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, records)")
    args = p.parse_args(argv)
    for key, value in PROFILES[args.profile].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.model_in_path = args.profile == "production"
    if (args.model_in_path and not args.model_latency_ms) or (args.model_latency_ms or 0) < 0:
        p.error("--model-latency-ms must be > 0 with --profile production (and never < 0)")
    if args.concurrency < 1 or args.workers < 1:
        p.error("--concurrency and --workers must be >= 1")
    threads = args.concurrency * args.workers
    if args.jobs is None:
        args.jobs = 20 * threads
    if args.warmup is None:
        args.warmup = threads
    if args.jobs < 1 or args.warmup < 0 or args.sandbox_latency_ms <= 0:
        p.error("--jobs must be >= 1, --warmup >= 0, --sandbox-latency-ms > 0")
    if args.jobs + args.warmup + args.profile_jobs > 10_000:
        p.error("--jobs + --warmup + --profile-jobs must be <= 10000 (refund_cases' limit)")
    # What bench.pipeline's helpers read.
    args.pool = "threads"
    args.profile_clock = "cpu"
    args.database = "postgresql"
    return args


def say(line: str = "") -> None:
    print(line, flush=True)


# --- sandbox control --------------------------------------------------------------------------


def set_latency(sandbox: str, latency_ms: float) -> None:
    import httpx

    spec = {"system": "*", "latency_ms": latency_ms, "count": COUNTER}
    resp = httpx.post(f"{sandbox}/_sandbox/faults", json=spec, timeout=10)
    resp.raise_for_status()


def requests_left(sandbox: str) -> int:
    """The latency fault's countdown: one less per downstream request the sandbox served."""
    import httpx

    faults = httpx.get(f"{sandbox}/_sandbox/faults", timeout=10).json()["faults"]
    if "*" not in faults:
        raise RuntimeError(f"the sandbox's latency fault is gone: {faults}")
    return int(faults["*"]["remaining"])


def refund_cases(sandbox: str, count: int) -> list[dict[str, Any]]:
    import httpx

    resp = httpx.post(f"{sandbox}/_sandbox/refund_cases", params={"count": count}, timeout=120)
    resp.raise_for_status()
    cases: list[dict[str, Any]] = resp.json()["cases"]
    return cases


def submit(run_id: str, label: str, cases: list[dict[str, Any]]) -> list[str]:
    from app.intake import submissions

    ids = []
    for i, case in enumerate(cases):
        raw = {
            "workflow": "support_refund",
            "source": "bench",
            "external_id": str(case["ticket_id"]),
            "delivery_id": f"sat-{run_id}-{label}{i}",
            "requester": f"zendesk-user:{case['user_id']}",
            "input": {"ticket_id": case["ticket_id"]},
        }
        job_id, created = submissions.submit(raw, submitted_by="bench")
        if not created:
            raise RuntimeError(f"delivery {raw['delivery_id']} was already submitted")
        ids.append(job_id)
    return ids


# --- workers ----------------------------------------------------------------------------------


def start_workers(
    children: Children, kind: str, argv_for: Any, n: int, env: dict[str, str], tmp: Path, app: Any
) -> list[Child]:
    """Start n workers (argv_for(hostname) -> argv) and wait until each answers a ping."""
    started, names = [], []
    for k in range(n):
        name = f"sat-{kind}-{k}@bench"
        names.append(name)
        # The child is named after its Celery hostname (control commands address it).
        started.append(children.spawn(name, argv_for(name), env, tmp / f"{kind}-worker{k}.log"))
    answered: set[str] = set()

    def all_pong() -> bool:
        for reply in app.control.ping(destination=names, timeout=0.5) or []:
            answered.update(reply)
        return answered >= set(names)

    wait_until(
        all_pong,
        90,
        f"{kind} workers to answer ping",
        interval=0.3,
        alive=lambda: children.check_alive(started),
    )
    return started


def hold(app: Any, queue: str, names: list[str]) -> None:
    """Stop the workers consuming `queue` (so a backlog can be loaded without them)."""
    replies = app.control.cancel_consumer(queue, destination=names, reply=True, timeout=5)
    if len(replies or []) < len(names):
        raise RuntimeError(f"not every worker confirmed it stopped consuming {queue}: {replies}")


def release(app: Any, queue: str, names: list[str]) -> None:
    """Let the workers consume `queue` again."""
    replies = app.control.add_consumer(queue, destination=names, reply=True, timeout=5)
    if len(replies or []) < len(names):
        raise RuntimeError(f"not every worker confirmed it consumes {queue} again: {replies}")


def names_of(workers: list[Child]) -> list[str]:
    return [w.name for w in workers]


def opsgate_argv(args: argparse.Namespace, records: Path) -> Any:
    def argv(hostname: str) -> list[str]:
        opts = [
            "worker",
            "--queues",
            QUEUES,
            "--pool",
            "threads",
            "--concurrency",
            str(args.concurrency),
            "--hostname",
            hostname,
        ]
        if args.plain_workers:
            return [sys.executable, "-m", "app", *opts]
        return [sys.executable, "-m", "bench.saturation_worker", str(records), *opts]

    return argv


def bare_argv(args: argparse.Namespace) -> Any:
    from bench import saturation_bare

    def argv(hostname: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.saturation_bare",
            "worker",
            "-Q",
            ",".join(saturation_bare.QUEUES),
            "-c",
            str(args.concurrency),
            "-P",
            "threads",
            "-n",
            hostname,
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]

    return argv


# --- the two sides ----------------------------------------------------------------------------


@dataclass
class PipeSide:
    jobs: int
    done: int
    seconds: float
    counts: dict[str, int]
    escalations: dict[str, int]
    refunds_applied: int
    job_ids: list[str]
    t0: float
    end: float
    sandbox_requests: int
    stamps: list[float]
    cpu: list[str]
    other_load: float
    worker_cpu: float  # CPU seconds of the worker processes in the window
    machine_cpu: float  # CPU seconds the whole machine was busy in the window
    logs: list[tuple[Path, int, int]]
    db_before: dict[str, int] | None
    db_after: dict[str, int] | None
    tables: list[str]
    model_requests: int = 0  # chat completions the scripted server received in the window
    rss: dict[str, dict[str, float]] = field(default_factory=dict)  # per worker process

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BareSide:
    chains: int
    done: int
    seconds: float
    stamps: list[float]
    cpu: list[str] = field(default_factory=list)
    other_load: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def run_pipeline(
    run: SatRun, env: dict[str, str], sandbox: str, cases: list[dict[str, Any]], records: Path
) -> tuple[PipeSide, list[Child]]:
    from app.celery_app import celery_app

    args, children = run.args, run.children
    workers = start_workers(
        children, "opsgate", opsgate_argv(args, records), args.workers, env, run.tmp, celery_app
    )
    alive = lambda: children.check_alive(workers)  # noqa: E731
    sandbox_child = [c for c in children.started if c.name == "sandbox"]
    warm = cases[: args.warmup]
    timed = cases[args.warmup : args.warmup + args.jobs]
    if warm:
        ids = submit(run.run_id, "w", warm)
        counts = wait_settled(ids, args.timeout, "pipeline warm-up", alive)
        if counts.get("completed", 0) != len(ids):
            say(
                f"bench: warm-up jobs did not all complete: {counts} "
                f"{report.escalation_reasons(ids)}"
            )

    db_before = report.db_activity(run.dbname)
    tables_before = sr.table_stats()
    sessions_before = sr.db_sessions(run.dbname)
    left_before = requests_left(sandbox)
    model_before = sm.requests_seen(sandbox) if args.model_in_path else 0
    if args.preload:
        hold(celery_app, "plan", names_of(workers))
        started = time.time()
        job_ids = submit(run.run_id, "t", timed)
        say(
            f"pipeline: {len(job_ids)} jobs submitted in {time.time() - started:.2f}s "
            "(held in the plan queue; the clock starts when the workers take them)"
        )
    before = cpu_snapshot({"opsgate workers": groups(workers), "sandbox": groups(sandbox_child)})
    starts = log_sizes(workers)
    rss = RssSampler({w.name: w.proc.pid for w in workers}).start()
    t0 = time.time()
    if not args.preload:
        job_ids = submit(run.run_id, "t", timed)
        say(f"pipeline: {len(job_ids)} jobs submitted in {time.time() - t0:.2f}s (clock running)")
    else:
        release(celery_app, "plan", names_of(workers))
    counts = wait_settled(job_ids, args.timeout, "pipeline jobs", alive)
    rss_seen = rss.stop()
    after = cpu_snapshot({"opsgate workers": groups(workers), "sandbox": groups(sandbox_child)})
    left_after = requests_left(sandbox)
    model_after = sm.requests_seen(sandbox) if args.model_in_path else 0
    stamps = sr.completion_times(job_ids)
    end = stamps[-1] if stamps else time.time()
    time.sleep(1.2)  # PostgreSQL flushes its per-backend statistics at most once a second
    db_after = report.db_activity(run.dbname)
    tables_after = sr.table_stats()
    sessions_after = sr.db_sessions(run.dbname)
    side = PipeSide(
        jobs=len(job_ids),
        done=counts.get("completed", 0),
        seconds=end - t0,
        counts=counts,
        escalations=report.escalation_reasons(job_ids),
        refunds_applied=applied_refunds(sandbox, {c["charge_id"] for c in timed}),
        job_ids=job_ids,
        t0=t0,
        end=end,
        sandbox_requests=left_before - left_after,
        stamps=stamps,
        cpu=cpu_report(before, after, max(counts.get("completed", 0), 1), "job"),
        other_load=other_load(before, after),
        worker_cpu=after.by_component["opsgate workers"] - before.by_component["opsgate workers"],
        machine_cpu=after.busy - before.busy,
        logs=log_slices(workers, starts),
        db_before=db_before,
        db_after=db_after,
        tables=[
            *sr.db_session_lines(
                sessions_before, sessions_after, counts.get("completed", 0), end - t0
            ),
            *sr.table_scan_lines(tables_before, tables_after, counts.get("completed", 0)),
        ],
        model_requests=model_after - model_before,
        rss=rss_seen,
    )
    return side, workers


def run_bare(run: SatRun, env: dict[str, str], hops: list[tuple[str, float]]) -> BareSide:
    from bench import saturation_bare as bare

    args, children, r = run.args, run.children, run.redis_client
    workers = start_workers(children, "bare", bare_argv(args), args.workers, env, run.tmp, bare.app)
    alive = lambda: children.check_alive(workers)  # noqa: E731

    def finished() -> int:
        return int(r.llen(bare.DONE_KEY))

    if args.warmup:
        for n in range(args.warmup):
            bare.sleep_chain(n, hops).apply_async()
        wait_until(lambda: finished() >= args.warmup, args.timeout, "bare warm-up", alive=alive)
    r.delete(bare.DONE_KEY)
    first = bare.STAGE_QUEUES.get(hops[0][0], "sat_plan")
    if args.preload:
        hold(bare.app, first, names_of(workers))
        for n in range(args.jobs):
            bare.sleep_chain(n, hops).apply_async()
    before = cpu_snapshot({"bare workers": groups(workers)})
    t0 = time.time()
    if not args.preload:
        for n in range(args.jobs):
            bare.sleep_chain(n, hops).apply_async()
    else:
        release(bare.app, first, names_of(workers))
    try:
        wait_until(lambda: finished() >= args.jobs, args.timeout, "bare chains", alive=alive)
    except TimeoutError as exc:
        say(f"bench: {exc}")
    after = cpu_snapshot({"bare workers": groups(workers)})
    stamps = sorted(float(v) for v in r.lrange(bare.DONE_KEY, 0, -1))
    end = stamps[-1] if stamps else time.time()
    for w in workers:
        children.stop(w)
    return BareSide(
        args.jobs,
        len(stamps),
        end - t0,
        stamps,
        cpu_report(before, after, max(len(stamps), 1), "chain"),
        other_load(before, after),
    )


# --- the run ----------------------------------------------------------------------------------


def prepare(run: SatRun) -> tuple[dict[str, str], str, list[dict[str, Any]]]:
    """Redis flushed, the database created and migrated, the sandbox up, slow and stocked."""
    args = run.args
    run.claim_redis()
    db_url = create_database(args.pg_admin_url, run.dbname)
    run.db_created = True
    port = free_port()
    sandbox = f"http://127.0.0.1:{port}"
    env = opsgate_env(args, db_url, run.tmp, sandbox, run.run_id)
    if args.model_in_path:
        env.update(sm.model_env(sandbox, sm.config_dir(ROOT / "config", run.tmp / "config")))
    apply_env_here(env)
    subprocess.run(
        [sys.executable, "-m", "app", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    start_sandbox(run.children, env, run.tmp, port, run.tmp / "sandbox.db")
    cases = refund_cases(sandbox, args.warmup + args.jobs + args.profile_jobs)
    set_latency(sandbox, args.sandbox_latency_ms)
    if args.model_in_path:
        sm.script(sandbox, cases, args.model_latency_ms)
    return env, sandbox, cases


def measure(run: SatRun) -> int:
    args = run.args
    threads = args.concurrency * args.workers
    lat_s = args.sandbox_latency_ms / 1000
    say(
        f"bench saturation {run.run_id}: {args.jobs} jobs (+{args.warmup} warm-up), "
        f"{args.workers} opsgate worker(s) x threads pool x concurrency {args.concurrency}, "
        f"sandbox latency {args.sandbox_latency_ms:g} ms per request, redis {args.redis_url}, "
        f"postgresql {run.dbname}"
    )
    if args.model_in_path:
        say(
            f"model tier: the planner and the judge call the sandbox's scripted server, "
            f"{args.model_latency_ms:g} ms per call (profile {args.profile})"
        )
    else:
        model = (
            f"{args.model_latency_ms:g} ms requested, " if args.model_latency_ms is not None else ""
        )
        say(f"model stand-in: {model}{MODEL_NOTE}")
    env, sandbox, cases = prepare(run)
    records = run.tmp / "records"

    say("pipeline: running ...")
    pipe, workers = run_pipeline(run, env, sandbox, cases, records)
    say(
        f"pipeline: {pipe.done}/{pipe.jobs} jobs completed in {pipe.seconds:.2f}s = "
        f"{pipe.rate:.2f} jobs/s; statuses {pipe.counts}"
        + (f"; escalations {pipe.escalations}" if pipe.escalations else "")
    )
    say(f"sandbox ledger: {pipe.refunds_applied} stripe refunds applied for {pipe.jobs} jobs")

    # The critical path, measured.
    rows = sr.tool_rows(pipe.job_ids, args.sandbox_latency_ms)
    n = max(pipe.jobs, 1)
    row_calls = sum(r.rows for r in rows) / n
    row_trips = sum(r.rows * r.round_trips for r in rows) / n
    calls_per_job = pipe.sandbox_requests / n
    shape, shape_jobs, shape_seen = sr.hop_shape(pipe.job_ids, rows)
    model_lat_s = (args.model_latency_ms or 0.0) / 1000 if args.model_in_path else 0.0
    model_rows = sm.call_rows(pipe.job_ids) if args.model_in_path else []
    model_per_job = pipe.model_requests / n
    critical_s = calls_per_job * lat_s + model_per_job * model_lat_s
    ideal = threads / critical_s if critical_s > 0 else 0.0
    ratio = pipe.rate / ideal if ideal else 0.0
    say(
        f"critical path: {calls_per_job:.2f} sandbox round trips per job (sandbox request "
        f"counter: {pipe.sandbox_requests} requests / {pipe.jobs} jobs) x "
        f"{args.sandbox_latency_ms:g} ms"
        + (
            f" + {model_per_job:.2f} model calls per job (scripted server's request count: "
            f"{pipe.model_requests} / {pipe.jobs}) x {args.model_latency_ms:g} ms"
            if args.model_in_path
            else ""
        )
        + f" = {1000 * critical_s:.0f} ms"
    )
    if args.model_in_path:
        say(
            "  model_calls: "
            + (
                ", ".join(
                    f"{stage} {calls / n:.2f}/job ({hits} cache hits, avg {avg:.0f} ms)"
                    for stage, calls, hits, avg in model_rows
                )
                or "none"
            )
        )
        if abs(sum(c - h for _, c, h, _ in model_rows) / n - model_per_job) > 0.05:
            say("  WARNING: model_calls and the scripted server's request count disagree")
    say(
        f"  tool_calls: {row_calls:.2f} rows per job standing for {row_trips:.2f} round trips; "
        "hops (stage: round trips) "
        + ", ".join(f"{s}: {t}" for s, t in shape)
        + f" ({shape_jobs}/{shape_seen} jobs have this shape)"
    )
    if abs(row_trips - calls_per_job) > 0.05:
        say("  WARNING: tool_calls and the sandbox's request counter disagree on round trips")
    say(
        f"pipeline: {pipe.rate:.2f} jobs/s, ideal {threads} threads / {critical_s:.3f} s = "
        f"{ideal:.2f} jobs/s, ratio {ratio:.3f} (target >= {TARGET})"
    )

    for w in workers:
        run.children.stop(w)
    run.reset_redis()

    bare: BareSide | None = None
    hops = [(s, t * lat_s) for s, t in shape]
    if args.model_in_path:
        # Each stage's model calls (server-side count split by model_calls' stages) join its hop.
        per_stage = {st: (c - h) / n * model_lat_s for st, c, h, _ in model_rows}
        hops = sm.with_model_hops(hops, per_stage)
    hops = hops or [("plan", critical_s)]
    bare_sleep = sum(s for _, s in hops)
    if not args.skip_bare:
        say(
            f"bare: {args.jobs} chains of {len(hops)} sleeping hops "
            f"({' + '.join(f'{1000 * s:.0f}' for _, s in hops)} = {1000 * bare_sleep:.0f} ms) "
            f"on {args.workers} worker(s) x threads x {args.concurrency} ..."
        )
        bare = run_bare(run, env, hops)
    bare_ideal = threads / bare_sleep if bare_sleep else 0.0
    bare_ratio = bare.rate / bare_ideal if bare and bare_ideal else None
    if bare is not None:
        say(
            f"bare: {bare.done}/{bare.chains} chains in {bare.seconds:.2f}s = {bare.rate:.2f} "
            f"chains/s, ideal {threads} threads / {bare_sleep:.3f} s = "
            f"{bare_ideal:.2f} chains/s, ratio {bare_ratio:.3f}"
        )
    noisy = max(pipe.other_load, bare.other_load if bare else 0.0) > 0.1
    say(
        f"CPU used by processes outside this run: {100 * pipe.other_load:.0f}% of the machine "
        "during the pipeline window"
        + (f", {100 * bare.other_load:.0f}% during the bare window" if bare else "")
        + (" (the figures are disturbed; rerun on a quiet machine)" if noisy else "")
    )

    rss_max = max((v["max_mb"] for v in pipe.rss.values()), default=None)
    rss_median = max((v["median_mb"] for v in pipe.rss.values()), default=None)
    say(
        "worker RSS in the timed window (VmRSS, sampled every 0.5 s; target <= "
        f"{RSS_TARGET_MB:g} MB per worker process): "
        + (
            "; ".join(
                f"{name} max {v['max_mb']:.1f} MB, median {v['median_mb']:.1f} MB"
                for name, v in pipe.rss.items()
            )
            or "no samples"
        )
    )
    valid = (
        pipe.done == pipe.jobs
        and not pipe.escalations
        and pipe.refunds_applied == pipe.jobs
        and (bare is None or bare.done == bare.chains)
    )
    if ratio < TARGET or args.explain or not valid:
        explain(
            run,
            pipe,
            bare,
            rows,
            calls_per_job,
            threads,
            lat_s,
            records,
            bare_sleep,
            env,
            cases[args.warmup + args.jobs :],
        )

    result = {
        "metric": "saturation",
        "ratio": round(ratio, 4),
        "target": TARGET,
        "jobs_per_s": round(pipe.rate, 3),
        "ideal_jobs_per_s": round(ideal, 3),
        "concurrency": args.concurrency,
        "calls_per_job": round(calls_per_job, 3),
        "sandbox_latency_ms": args.sandbox_latency_ms,
        "profile": args.profile,
        "model_latency_ms": args.model_latency_ms if args.model_in_path else None,
        "model_calls_per_job": round(model_per_job, 3) if args.model_in_path else None,
        "jobs": pipe.jobs,
        "workers": args.workers,
        "completed": pipe.done,
        "valid": valid,
        "tool_call_rows_per_job": round(row_calls, 3),
        "critical_path_ms": round(1000 * critical_s, 1),
        "bare_ratio": round(bare_ratio, 4) if bare_ratio is not None else None,
        "bare_chains_per_s": round(bare.rate, 3) if bare else None,
        "bare_ideal_chains_per_s": round(bare_ideal, 3) if bare else None,
        "model_tier": "small (scripted server)" if args.model_in_path else MODEL_NOTE,
        "model_latency_ms_requested": args.model_latency_ms,
        "pipeline_seconds": round(pipe.seconds, 2),
        "bare_seconds": round(bare.seconds, 2) if bare else None,
        "other_load_pipeline": round(pipe.other_load, 3),
        "rss_max_mb": rss_max,
        "rss_median_mb": rss_median,
        "rss_target_mb": RSS_TARGET_MB,
        "rss_per_process": pipe.rss,
        "run_seconds": round(time.monotonic() - run.started, 1),
    }
    run.children.stop_all()
    result["run_seconds"] = round(time.monotonic() - run.started, 1)
    say()
    print(json.dumps(result), flush=True)
    return 0 if valid else 1


def explain(
    run: SatRun,
    pipe: PipeSide,
    bare: BareSide | None,
    rows: list[sr.ToolRow],
    calls_per_job: float,
    threads: int,
    lat_s: float,
    records: Path,
    bare_sleep: float,
    env: dict[str, str],
    profile_cases: list[dict[str, Any]],
) -> None:
    from bench.saturation_worker import read_records

    say()
    say("where the time goes (pipeline side):")
    tool_ms = sum(r.sum_ms for r in rows) / max(pipe.jobs, 1)
    recs = sr.in_window(read_records(records), pipe.t0, pipe.end) if records.exists() else []
    lines: list[str] = []
    if recs:
        lines += sr.thread_budget_lines(
            recs, threads, pipe.seconds, max(pipe.done, 1), calls_per_job * lat_s, tool_ms
        )
        lines += sr.task_table_lines(recs, max(pipe.done, 1))
    else:
        lines.append("  (no per-task timing records: --plain-workers, or the hooks wrote none)")
        lines += report.task_runtime_lines(pipe.logs, "pipeline")
    if records.exists():
        from bench.saturation_worker import read_statements

        lines += sr.statement_lines(read_statements(records), pipe.jobs + run.args.warmup)
    lines += sr.tool_lines(rows, pipe.jobs, 1000 * lat_s)
    lines += report.stage_lines(pipe.job_ids)
    lines += pipe.cpu
    lines.append(
        "    (PostgreSQL backends that exit inside the window, such as the pool's overflow "
        "connections, drop out of the postgres line and land in 'everything else')"
    )
    lines += sr.ceiling_lines(
        pipe.worker_cpu,
        pipe.machine_cpu,
        pipe.seconds,
        max(pipe.done, 1),
        run.args.workers,
        calls_per_job * lat_s,
        threads,
    )
    lines += report.db_activity_lines(pipe.db_before, pipe.db_after, pipe.done)
    lines += pipe.tables
    if bare is not None:
        lines.append("where the time goes (bare side):")
        lines += sr.bare_budget_lines(threads, bare.seconds, bare.done, bare_sleep)
        lines += bare.cpu
    for line in lines:
        say(line)
    if profile_cases:
        say(" profile (extra untimed batch, pipeline workers under cProfile):")
        try:
            cases = [SimpleNamespace(**c) for c in profile_cases]
            for line in run_profile(run.args, run.children, env, run.tmp, cases, run.run_id):
                say(line)
        except (RuntimeError, TimeoutError, OSError) as exc:
            say(f"  (profile failed: {exc})")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; always clean up what it started."""
    return procs.guarded(SatRun(parse_args(argv)), measure, "opsgate-saturation")


if __name__ == "__main__":
    sys.exit(main())
