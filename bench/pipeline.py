"""Benchmark: opsgate's full pipeline against a bare Celery chain, in one run, on one Redis.

What it measures
  1. pipeline jobs/s: `support_refund` jobs submitted through `app.intake.submissions.submit`
     and run by real `opsgate worker` processes (rules planner, the sandbox over HTTP,
     PostgreSQL), until
     every job is `completed`. One job is 6 task hops: plan -> verify_proposal -> execute
     (stripe.refund) -> verify_outcome -> execute (zendesk.add_comment) -> verify_outcome,
     each with its database transactions and sandbox calls.
  2. bare chains/s: chains of 6 no-op tasks (bench/bare.py), on the same Redis broker, with
     opsgate's Celery delivery settings and the same pool type, concurrency and number of
     worker processes.
  Both sides: a short untimed warm-up, then the clock runs from the first submit until the
  last job/chain finished (its own finish timestamp, from the database or Redis).

How to read the output
  `ratio` = pipeline jobs/s / bare chains/s: the share of bare Celery throughput the pipeline
  keeps for the same hop count (target 0.5). Below the target, the lines before the JSON
  say where the time goes: CPU per component in each timed window (workers, sandbox,
  PostgreSQL, Redis, this process), per-hop durations from job_events, downstream call
  latencies from tool_calls, database work per job, and the top of a cProfile of the
  workers' task executions (an extra, untimed batch run by bench/profiled_worker.py).
  The last line is one JSON object; `valid` is false (and the exit status 1) if any job did
  not complete or the sandbox ledger does not show exactly one applied refund per job.

It starts and always stops its own sandbox and worker processes, creates a fresh PostgreSQL
database (dropped at the end) and FLUSHes the Redis database it is given (start and end).

    .venv/bin/python -m bench.pipeline [--jobs 200] [--pool threads] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as `python bench/pipeline.py`
    sys.path.insert(0, str(ROOT))

from bench import procs, report  # noqa: E402
from bench.procs import (  # noqa: E402
    Child,
    Children,
    CpuSnapshot,
    cpu_report,
    cpu_snapshot,
    other_load,
    wait_until,
)  # noqa: E402

HOPS = 6
TARGET = 0.5
# Worker CPU per job over the bare chain's per chain; statements and commits per job (issue 20).
CPU_TARGET = 3.0
STATEMENTS_BUDGET = 40
COMMITS_BUDGET = 12
QUEUES = "plan,verify,execute,human,maintenance"
SETTLED = {"completed", "escalated", "failed", "rejected", "cancelled"}


@dataclass
class Side:
    """The timed result of one side of the comparison."""

    units: int
    seconds: float
    done: int
    cpu: list[str] = field(default_factory=list)
    other_load: float = 0.0
    logs: list[tuple[Path, int, int]] = field(default_factory=list)
    # CPU seconds the side's worker processes used in the timed window.
    worker_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description="Measure opsgate's pipeline jobs/s against a bare 6-task Celery chain's "
        "chains/s on the same Redis, and print the ratio (target >= 0.5). "
        "The last output line is a JSON object.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--jobs", type=int, default=200, help="timed pipeline jobs")
    p.add_argument(
        "--bare-chains",
        type=int,
        default=1000,
        help="timed bare chains: more than --jobs because a bare chain is ~10x "
        "faster; 200 chains last only 1-2 s, too short for a steady figure",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="untimed jobs/chains run first on each side (process start-up, connections, imports)",
    )
    p.add_argument(
        "--pool",
        choices=("threads", "prefork"),
        default="threads",
        help="Celery pool of every worker, both sides",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="threads (or processes with prefork) per worker, both sides",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes per side (the defaults are `opsgate worker`'s: one process, "
        "threads pool, concurrency 8)",
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/14",
        help="broker for both sides; this Redis database is FLUSHed at start and end (a "
        "database holding keys is refused without --force-flush)",
    )
    p.add_argument(
        "--force-flush",
        action="store_true",
        help="flush the Redis database even if it holds keys (it may be someone else's)",
    )
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to create (and drop) the run's database with",
    )
    p.add_argument(
        "--pgbouncer",
        action="store_true",
        help="put Debian's pgbouncer (from PATH) in transaction mode between opsgate and the "
        "run's database: workers and intake connect through it with ?prepare_threshold=none "
        "(docs/scaling.md), migrations go direct",
    )
    p.add_argument(
        "--pgbouncer-prepared",
        action="store_true",
        help="with --pgbouncer: keep psycopg's server-side prepared statements on, to see "
        "what breaks without the setting (pgbouncer < 1.21)",
    )
    p.add_argument(
        "--database",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="opsgate's store for the run (sqlite: the embedded default, a file in the temp dir)",
    )
    p.add_argument(
        "--profile-jobs",
        type=int,
        default=100,
        help="jobs of the extra, untimed, profiled batch run when the ratio is "
        "below the target (0: no profile)",
    )
    p.add_argument(
        "--profile-clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="profile each pool thread's CPU time, or wall-clock time (waits on "
        "I/O and the GIL included)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait per phase")
    p.add_argument(
        "--keep-temp",
        action="store_true",
        help="keep the temp dir (process logs, profiles) for inspection",
    )
    args = p.parse_args(argv)
    if min(args.jobs, args.bare_chains, args.concurrency, args.workers) < 1 or args.warmup < 0:
        p.error("--jobs, --bare-chains, --concurrency and --workers must be >= 1, --warmup >= 0")
    return args


def say(line: str = "") -> None:
    print(line, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the run's PostgreSQL database ------------------------------------------------------------


def create_database(admin_url: str, name: str) -> str:
    """CREATE DATABASE name; returns its URL (same server and credentials as admin_url)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE name, disconnecting whatever is still connected."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- workers ----------------------------------------------------------------------------------


def worker_argv(
    kind: str, args: argparse.Namespace, hostname: str, profile_dir: Path | None = None
) -> list[str]:
    """The command line of one worker of either side, with the same pool settings."""
    py = sys.executable
    pool = ["--concurrency", str(args.concurrency), "--pool", args.pool, "--hostname", hostname]
    if kind == "bare":
        from bench.bare import QUEUES as BARE_QUEUES

        return [
            py,
            "-m",
            "celery",
            "-A",
            "bench.bare",
            "worker",
            "-Q",
            ",".join(BARE_QUEUES),
            "-c",
            str(args.concurrency),
            "-P",
            args.pool,
            "-n",
            hostname,
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
    if profile_dir is not None:
        return [
            py,
            "-m",
            "bench.profiled_worker",
            str(profile_dir),
            "worker",
            "--queues",
            QUEUES,
            *pool,
        ]
    return [py, "-m", "app", "worker", "--queues", QUEUES, *pool]


def start_workers(
    children: Children,
    kind: str,
    args: argparse.Namespace,
    env: dict[str, str],
    tmp: Path,
    tag: str,
    celery_app: Any,
    profile_dir: Path | None = None,
) -> list[Child]:
    """Start args.workers workers and wait until each answers a control ping."""
    started, names = [], []
    for k in range(args.workers):
        name = f"{kind}-{tag}-{k}@bench"
        names.append(name)
        started.append(
            children.spawn(
                f"{kind} worker {k}",
                worker_argv(kind, args, name, profile_dir),
                env,
                tmp / f"{kind}-{tag}-worker{k}.log",
            )
        )
    answered: set[str] = set()

    def all_pong() -> bool:
        for reply in celery_app.control.ping(destination=names, timeout=0.5) or []:
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


def groups(children: list[Child]) -> list[int]:
    return [c.proc.pid for c in children]


def log_sizes(children: list[Child]) -> list[int]:
    return [c.log.stat().st_size if c.log.exists() else 0 for c in children]


def log_slices(children: list[Child], starts: list[int]) -> list[tuple[Path, int, int]]:
    """The part of each worker's log written since `starts` (the timed window)."""
    return [(c.log, s, e) for c, s, e in zip(children, starts, log_sizes(children), strict=True)]


# --- the bare side ----------------------------------------------------------------------------


def run_bare(
    args: argparse.Namespace, children: Children, env: dict[str, str], tmp: Path, redis_client: Any
) -> Side:
    """Time args.bare_chains chains of 6 no-op tasks."""
    from bench import bare

    workers = start_workers(children, "bare", args, env, tmp, "b", bare.app)

    def finished() -> int:
        return int(redis_client.llen(bare.DONE_KEY))

    alive = lambda: children.check_alive(workers)  # noqa: E731
    if args.warmup:
        for n in range(args.warmup):
            bare.bare_chain(n).apply_async()
        wait_until(lambda: finished() >= args.warmup, args.timeout, "bare warm-up", alive=alive)
    redis_client.delete(bare.DONE_KEY)

    before = cpu_snapshot({"bare workers": groups(workers)})
    log_starts = log_sizes(workers)
    t0 = time.time()
    for n in range(args.bare_chains):
        bare.bare_chain(n).apply_async()
    try:
        wait_until(lambda: finished() >= args.bare_chains, args.timeout, "bare chains", alive=alive)
    except TimeoutError as exc:
        say(f"bench: {exc}")
    after = cpu_snapshot({"bare workers": groups(workers)})
    stamps = [float(v) for v in redis_client.lrange(bare.DONE_KEY, 0, -1)]
    end = max(stamps) if stamps else time.time()
    side = Side(
        args.bare_chains,
        end - t0,
        len(stamps),
        cpu_report(before, after, max(len(stamps), 1), "chain"),
        other_load(before, after),
        log_slices(workers, log_starts),
        used(before, after, "bare workers"),
    )
    for w in workers:
        children.stop(w)
    redis_client.delete(bare.DONE_KEY)
    return side


# --- the pipeline side ------------------------------------------------------------------------


def submission(run_id: str, label: str, case: Any) -> dict[str, Any]:
    return {
        "workflow": "support_refund",
        "source": "bench",
        "external_id": str(case.ticket_id),
        "delivery_id": f"bench-{run_id}-{label}{case.ticket_id}",
        "requester": f"zendesk-user:{case.user_id}",
        "input": {"ticket_id": case.ticket_id},
    }


def submit_all(run_id: str, label: str, cases: list[Any]) -> list[str]:
    from app.intake import submissions

    ids = []
    for case in cases:
        job_id, created = submissions.submit(submission(run_id, label, case), submitted_by="bench")
        if not created:
            raise RuntimeError(f"ticket {case.ticket_id} was already submitted in this run")
        ids.append(job_id)
    return ids


def dump_stacks(workers: list[Child], lines: int = 80) -> None:
    """Ask stuck workers for their threads' stacks (Celery logs them on SIGUSR1), show them."""
    for w in workers:
        if w.proc.poll() is None:
            os.kill(w.proc.pid, signal.SIGUSR1)
    time.sleep(2)
    for w in workers:
        say(f"bench: last lines of {w.name}'s log ({w.log}):")
        say(procs.tail(w.log, lines))


def wait_settled(
    job_ids: list[str], timeout: float, what: str, alive: Any, workers: list[Child] | None = None
) -> dict[str, int]:
    counts: dict[str, int] = {}

    def settled() -> bool:
        nonlocal counts
        counts = report.status_counts(job_ids)
        return sum(n for s, n in counts.items() if s in SETTLED) >= len(job_ids)

    try:
        wait_until(settled, timeout, what, alive=alive)
    except TimeoutError as exc:
        say(f"bench: {exc}; statuses {counts}")
        if workers:
            dump_stacks(workers)
    return counts


@dataclass
class PipelineResult:
    """The pipeline side plus what the checks and diagnostics need."""

    side: Side
    job_ids: list[str]
    counts: dict[str, int]
    escalations: dict[str, int]
    refunds_applied: int
    refunds_expected: int
    db_before: dict[str, int] | None
    db_after: dict[str, int] | None
    # Per job, as the workers counted them (app.telemetry.dbwork).
    statements_per_job: float = 0.0
    commits_per_job: float = 0.0


def applied_refunds(sandbox_url: str, charge_ids: set[str]) -> int:
    """Stripe refunds the sandbox applied (not replayed) on these charges."""
    import httpx

    writes = httpx.get(
        f"{sandbox_url}/_sandbox/ledger",
        params={"outcome": "applied", "system": "stripe"},
        timeout=30,
    ).json()["writes"]
    return sum(
        1
        for w in writes
        if w["path"].endswith("/refunds") and (w.get("body") or {}).get("charge") in charge_ids
    )


def run_pipeline(
    args: argparse.Namespace,
    children: Children,
    env: dict[str, str],
    tmp: Path,
    cases: dict[str, list[Any]],
    sandbox_url: str,
    dbname: str,
    run_id: str,
) -> tuple[PipelineResult, list[Child]]:
    """Time args.jobs support_refund jobs through the whole pipeline."""
    from app.celery_app import celery_app
    from app.telemetry import metrics

    workers = start_workers(children, "opsgate", args, env, tmp, "p", celery_app)
    alive = lambda: children.check_alive(workers)  # noqa: E731
    sandbox = [c for c in children.started if c.name == "sandbox"]
    if cases["warmup"]:
        warm = submit_all(run_id, "w", cases["warmup"])
        counts = wait_settled(warm, args.timeout, "pipeline warm-up", alive, workers)
        if counts.get("completed", 0) != len(warm):
            say(
                f"bench: warm-up jobs did not all complete: {counts} "
                f"{report.escalation_reasons(warm)}"
            )

    db_before = report.db_activity(dbname)
    before = cpu_snapshot({"opsgate workers": groups(workers), "sandbox": groups(sandbox)})
    log_starts = log_sizes(workers)
    t0 = time.time()
    job_ids = submit_all(run_id, "t", cases["timed"])
    counts = wait_settled(job_ids, args.timeout, "pipeline jobs", alive, workers)
    after = cpu_snapshot({"opsgate workers": groups(workers), "sandbox": groups(sandbox)})
    last = report.last_completion(job_ids)
    end = last.timestamp() if last is not None else time.time()
    done = counts.get("completed", 0)
    time.sleep(1.2)  # PostgreSQL flushes its per-backend statistics at most once a second
    db_after = report.db_activity(dbname)
    side = Side(
        args.jobs,
        end - t0,
        done,
        cpu_report(before, after, max(done, 1), "job"),
        other_load(before, after),
        log_slices(workers, log_starts),
        used(before, after, "opsgate workers"),
    )
    charges = {c.charge_id for c in cases["timed"]}
    # What the workers counted themselves (app.telemetry.dbwork), warm-up jobs included: every
    # task they ran for these jobs; no beat runs, so nothing else.
    work = metrics.task_work()
    settled = len(job_ids) + len(cases["warmup"])
    result = PipelineResult(
        side,
        job_ids,
        counts,
        report.escalation_reasons(job_ids),
        applied_refunds(sandbox_url, charges),
        len(charges),
        db_before,
        db_after,
        sum(f["statements"] for f in work.values()) / max(settled, 1),
        sum(f["commits"] for f in work.values()) / max(settled, 1),
    )
    return result, workers


def run_profile(
    args: argparse.Namespace,
    children: Children,
    env: dict[str, str],
    tmp: Path,
    cases: list[Any],
    run_id: str,
) -> list[str]:
    """An extra, untimed batch with every worker's task executions under cProfile."""
    from app.celery_app import celery_app

    prof_dir = tmp / "profile"
    workers = start_workers(children, "opsgate", args, env, tmp, "prof", celery_app, prof_dir)
    ids = submit_all(run_id, "p", cases)
    counts = wait_settled(
        ids, args.timeout, "profiled jobs", lambda: children.check_alive(workers), workers
    )
    for w in workers:
        children.stop(w)  # warm shutdown: each pool thread/process writes its last stats
    return [
        f"  profiled batch: {len(ids)} jobs, statuses {counts}",
        *report.profile_lines(prof_dir, args.profile_clock, len(ids)),
    ]


# --- the run ----------------------------------------------------------------------------------


def opsgate_env(
    args: argparse.Namespace, db_url: str, home: Path, sandbox_url: str, run_id: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OPSGATE_DATABASE_URL=db_url,
        OPSGATE_REDIS_URL=args.redis_url,
        OPSGATE_STRIPE_API_BASE=sandbox_url,
        OPSGATE_ZENDESK_API_BASE=sandbox_url,
        OPSGATE_SALESFORCE_API_BASE=sandbox_url,
        OPSGATE_OKTA_API_BASE=sandbox_url,
        OPSGATE_HOME=str(home),
        OPSGATE_AGENT_IDENTITY=f"opsgate-bench/{run_id}",
        BENCH_BROKER_URL=args.redis_url,
        BENCH_PROFILE_CLOCK=args.profile_clock,
        PYTHONPATH=str(ROOT),
    )
    # The model tiers stay off: the benchmark measures the rules planner.
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    return env


def apply_env_here(env: dict[str, str]) -> None:
    """Give this process the opsgate settings (intake, polling, control pings)."""
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        os.environ.pop(key, None)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("OPSGATE_", "BENCH_"))})
    from app.settings import get_settings

    get_settings.cache_clear()


def start_sandbox(
    children: Children, env: dict[str, str], tmp: Path, port: int, db_path: Path
) -> str:
    import httpx

    url = f"http://127.0.0.1:{port}"
    child = children.spawn(
        "sandbox",
        [sys.executable, "-m", "app", "sandbox", "--port", str(port), "--db", str(db_path)],
        env,
        tmp / "sandbox.log",
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 30, "the sandbox", alive=lambda: children.check_alive([child]))
    return url


@dataclass
class Run:
    """What one benchmark run owns and must clean up."""

    args: argparse.Namespace
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    started: float = field(default_factory=time.monotonic)
    tmp: Path = Path()
    children: Children = field(default_factory=lambda: Children(cwd=ROOT))
    redis_client: Any = None
    redis_claimed: bool = False
    db_created: bool = False

    @property
    def dbname(self) -> str:
        return f"opsgate_bench_{self.run_id}"

    def cleanup(self) -> None:
        """Stop every child, flush Redis, drop the database, remove the temp dir."""
        args = self.args
        self.children.stop_all()
        try:
            from app.core.db import dispose_engine

            dispose_engine()
        except Exception:
            pass
        if self.redis_client is not None and self.redis_claimed:
            try:
                if self.redis_client.get(SENTINEL) == self.run_id.encode():
                    self.redis_client.flushdb()
                else:  # flushed under us: whoever did it may be using the database now
                    print(
                        f"bench: {args.redis_url} is no longer ours; not flushing it",
                        file=sys.stderr,
                    )
            except Exception as exc:
                print(f"bench: could not flush {args.redis_url}: {exc}", file=sys.stderr)
        if self.db_created:
            try:
                drop_database(args.pg_admin_url, self.dbname)
            except Exception as exc:
                print(f"bench: could not drop database {self.dbname}: {exc}", file=sys.stderr)
        if args.keep_temp:
            print(f"bench: temp dir kept at {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


SENTINEL = "bench:pipeline:run"


def claim_redis_db(run: Run) -> None:
    """FLUSHDB the run's Redis database and mark it as ours; refuse a database in use.

    The mark lets every wait notice when another process flushes the database under the run
    (the lost queue messages would stall it), which the test suite's random-db fixture can do.
    """
    client, args = run.redis_client, run.args
    keys = client.dbsize()
    if keys and not args.force_flush:
        raise RuntimeError(
            f"{args.redis_url} holds {keys} keys: another process may be using it; pick another "
            "--redis-url, or pass --force-flush to flush it anyway"
        )
    client.flushdb()
    client.set(SENTINEL, run.run_id)
    run.redis_claimed = True

    def still_ours() -> None:
        if client.get(SENTINEL) != run.run_id.encode():
            raise RuntimeError(
                f"{args.redis_url} was flushed or taken over by another process during the run "
                "(queued messages are lost); rerun with another --redis-url"
            )

    run.children.watchdogs.append(still_ours)


def prepare(run: Run) -> tuple[dict[str, str], str, dict[str, list[Any]]]:
    """Redis flushed, the database created and migrated, the sandbox store populated.

    Returns the opsgate environment, the sandbox URL and the bench cases per phase."""
    import subprocess

    import redis

    args = run.args
    run.redis_client = redis.Redis.from_url(args.redis_url)
    claim_redis_db(run)
    if args.database == "postgresql":
        db_url = create_database(args.pg_admin_url, run.dbname)
        run.db_created = True
    else:
        db_url = f"sqlite:///{run.tmp / 'opsgate.db'}"
    direct_url = db_url  # migrations run against PostgreSQL itself, never through a pooler
    if getattr(args, "pgbouncer", False) and args.database == "postgresql":
        db_url, _ = procs.start_pgbouncer(run.children, run.tmp / "pgbouncer", direct_url)
        if not getattr(args, "pgbouncer_prepared", False):
            db_url += "?prepare_threshold=none"
    sandbox_url = f"http://127.0.0.1:{free_port()}"
    env = opsgate_env(args, db_url, run.tmp, sandbox_url, run.run_id)
    apply_env_here(env)
    say(
        f"bench {run.run_id}: {args.jobs} jobs, {args.bare_chains} bare chains "
        f"(+{args.warmup} warm-up each), "
        f"{args.workers} worker(s) x {args.pool} pool x concurrency {args.concurrency}, "
        f"redis {args.redis_url}, {args.database} "
        f"{run.dbname if run.db_created else db_url}"
        + (f" through pgbouncer ({db_url})" if db_url != direct_url else "")
    )
    subprocess.run(
        [sys.executable, "-m", "app", "db", "upgrade"],
        env={**env, "OPSGATE_DATABASE_URL": direct_url},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    from bench import sandbox_data

    everything = sandbox_data.populate(
        str(run.tmp / "sandbox.db"), args.warmup + args.jobs + args.profile_jobs
    )
    cases = {
        "warmup": everything[: args.warmup],
        "timed": everything[args.warmup : args.warmup + args.jobs],
        "profile": everything[args.warmup + args.jobs :],
    }
    return env, sandbox_url, cases


def explain(
    run: Run,
    env: dict[str, str],
    bare_side: Side,
    pipe: PipelineResult,
    workers: list[Child],
    cases: list[Any],
) -> None:
    """Print where the time goes (below the target, or when the run is not valid)."""
    say()
    say("where the time goes:")
    say(" bare chain side:")
    for line in [*bare_side.cpu, *report.task_runtime_lines(bare_side.logs, "bare")]:
        say(line)
    say(" pipeline side:")
    lines = [
        *pipe.side.cpu,
        *report.task_runtime_lines(pipe.side.logs, "pipeline"),
        *report.stage_lines(pipe.job_ids),
        *report.tool_call_lines(pipe.job_ids),
        *report.db_activity_lines(pipe.db_before, pipe.db_after, pipe.side.done),
    ]
    for line in lines:
        say(line)
    for w in workers:
        run.children.stop(w)
    if cases:
        say(" profile (extra untimed batch):")
        try:
            for line in run_profile(run.args, run.children, env, run.tmp, cases, run.run_id):
                say(line)
        except (RuntimeError, TimeoutError, OSError) as exc:
            say(f"  (profile failed: {exc})")


def used(before: CpuSnapshot, after: CpuSnapshot, component: str) -> float:
    """CPU seconds one component used between two snapshots."""
    return after.by_component.get(component, 0.0) - before.by_component.get(component, 0.0)


def summary(run: Run, bare_side: Side, pipe: PipelineResult) -> tuple[dict[str, Any], bool]:
    """The result object of the last output line, and whether the run is valid."""
    args, side = run.args, pipe.side
    valid = (
        side.done == args.jobs
        and not pipe.escalations
        and pipe.refunds_applied == pipe.refunds_expected
        and bare_side.done == args.bare_chains
    )
    ratio = side.rate / bare_side.rate if bare_side.rate else 0.0
    per_job = 1000 * side.worker_cpu / max(side.done, 1)
    per_chain = 1000 * bare_side.worker_cpu / max(bare_side.done, 1)
    return {
        "metric": "pipeline_vs_bare_chain",
        "ratio": round(ratio, 4),
        "target": TARGET,
        "pipeline_jobs_per_s": round(side.rate, 2),
        "bare_chains_per_s": round(bare_side.rate, 2),
        "jobs": args.jobs,
        "bare_chains": args.bare_chains,
        "hops": HOPS,
        "workers": args.workers,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "database": args.database,
        "pgbouncer": args.pgbouncer,
        "valid": valid,
        "completed": side.done,
        "escalated": pipe.counts.get("escalated", 0),
        "failed": pipe.counts.get("failed", 0),
        "stripe_refunds_applied": pipe.refunds_applied,
        "pipeline_seconds": round(side.seconds, 3),
        "bare_seconds": round(bare_side.seconds, 3),
        "warmup": args.warmup,
        "other_load_bare": round(bare_side.other_load, 3),
        "other_load_pipeline": round(side.other_load, 3),
        "worker_cpu_ms_per_job": round(per_job, 2),
        "worker_cpu_ms_per_chain": round(per_chain, 2),
        "worker_cpu_ratio": round(per_job / per_chain, 2) if per_chain else None,
        "worker_cpu_ratio_target": CPU_TARGET,
        "statements_per_job": round(pipe.statements_per_job, 2),
        "commits_per_job": round(pipe.commits_per_job, 2),
        "statements_budget": STATEMENTS_BUDGET,
        "commits_budget": COMMITS_BUDGET,
        "run_seconds": round(time.monotonic() - run.started, 1),
    }, valid


def measure(run: Run) -> int:
    """Both sides, the checks, the diagnostics; prints the JSON line; returns the exit code."""
    args = run.args
    env, sandbox_url, cases = prepare(run)

    say("bare chain: running ...")
    bare_side = run_bare(args, run.children, env, run.tmp, run.redis_client)
    say(
        f"bare chain: {bare_side.done}/{args.bare_chains} chains in {bare_side.seconds:.2f}s = "
        f"{bare_side.rate:.1f} chains/s ({bare_side.rate * HOPS:.0f} tasks/s)"
    )
    run.redis_client.flushdb()
    run.redis_client.set(SENTINEL, run.run_id)

    start_sandbox(
        run.children, env, run.tmp, int(sandbox_url.rsplit(":", 1)[1]), run.tmp / "sandbox.db"
    )
    say("pipeline: running ...")
    pipe, workers = run_pipeline(
        args, run.children, env, run.tmp, cases, sandbox_url, run.dbname, run.run_id
    )
    side = pipe.side
    say(
        f"pipeline: {side.done}/{args.jobs} jobs completed in {side.seconds:.2f}s = "
        f"{side.rate:.1f} jobs/s ({side.rate * HOPS:.0f} hops/s); statuses {pipe.counts}"
        + (f"; escalations {pipe.escalations}" if pipe.escalations else "")
    )
    say(
        f"sandbox ledger: {pipe.refunds_applied} stripe refunds applied for "
        f"{pipe.refunds_expected} timed jobs"
    )
    result, valid = summary(run, bare_side, pipe)
    say(f"ratio: {result['ratio']:.3f} (target >= {TARGET})")
    say(
        f"worker CPU: {result['worker_cpu_ms_per_job']:.1f} ms per job against "
        f"{result['worker_cpu_ms_per_chain']:.1f} ms per bare chain = "
        f"{result['worker_cpu_ratio']}x (target <= {CPU_TARGET}x)"
    )
    say(
        f"database work per job, as the workers counted it: {result['statements_per_job']} "
        f"statements (budget {STATEMENTS_BUDGET}), {result['commits_per_job']} commits "
        f"(budget {COMMITS_BUDGET})"
    )
    noisy = max(bare_side.other_load, side.other_load) > 0.1
    say(
        f"CPU used by processes outside this run: {100 * bare_side.other_load:.0f}% of the "
        f"machine during the bare window, {100 * side.other_load:.0f}% during the pipeline "
        "window" + (" (the figures are disturbed; rerun on a quiet machine)" if noisy else "")
    )
    if result["ratio"] < TARGET or not valid:
        explain(run, env, bare_side, pipe, workers, cases["profile"])
    run.children.stop_all()
    result["run_seconds"] = round(time.monotonic() - run.started, 1)
    say()
    print(json.dumps(result), flush=True)
    return 0 if valid else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; always clean up what it started."""
    return procs.guarded(Run(parse_args(argv)), measure, "opsgate-bench")


if __name__ == "__main__":
    sys.exit(main())
