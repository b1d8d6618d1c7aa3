"""Capacity: what one `support_refund` job costs each part of the fleet, counted in one run.

What it measures
  N `support_refund` jobs (rules planner, refund + note) run through the real pipeline, set
  up by bench/pipeline.py's functions: a fresh PostgreSQL database, the sandbox over HTTP,
  real `opsgate worker` processes, submissions through `app.intake.submissions.submit` in
  this process. After an untimed warm-up, it reads every counter before and after the timed
  jobs and prints, per job:
    - CPU from /proc: the worker processes, the sandbox, the PostgreSQL backends connected
      to the run's database (their process titles name it), the run's redis-server (only
      when it is the private one this bench starts), this process (intake + polling);
    - PostgreSQL: statements (pg_stat_statements when the server preloads it; through
      --pgbouncer also pgbouncer's own query count), commits and rollbacks and rows
      inserted/updated/deleted/fetched (pg_stat_database for the run's database, read after
      every backend of the run exited, so nothing is left unflushed), and what this process
      itself sent (SQLAlchemy events), so the workers' share is the difference;
    - rows written per table (row counts before/after) and bytes stored per job
      (pg_total_relation_size per table, before/after: heap, indexes and TOAST as written,
      before any VACUUM);
    - Redis: commands by name (INFO commandstats), network bytes in/out and memory (INFO).
  From the CPU figures it derives ceilings: jobs/s one core sustains for each component.

How to read the output
  Figures are per timed job. The statement and commit counts cover everything the jobs
  cause in the database (intake in this process included); the `this process` line says how
  much of it is intake and polling. The last line is one JSON object; `valid` is false (exit
  status 1) unless every job completed with exactly one applied refund each.

It starts and always stops its own processes. Redis: without --redis-url it starts a private
redis-server on a free port (INFO counters are per server, so a shared one mixes in other
clients); with --redis-url that database is FLUSHed at start and end (a database holding keys
is refused without --force-flush). The run's PostgreSQL database is created and dropped.

    .venv/bin/python -m bench.capacity [--jobs 100] [--pgbouncer]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as `python bench/capacity.py`
    sys.path.insert(0, str(ROOT))

from bench import pipeline, procs  # noqa: E402
from bench.pipeline import Run, say  # noqa: E402

# psycopg sends these as statements of their own; pg_stat_statements counts them too.
TXN_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.capacity",
        description="Run support_refund jobs through the real pipeline and print what one job "
        "costs: worker/PostgreSQL/Redis CPU, PostgreSQL statements, commits and rows, rows "
        "and bytes stored per table, Redis commands and bytes. "
        "The last output line is a JSON object.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--jobs", type=int, default=100, help="timed jobs")
    p.add_argument("--warmup", type=int, default=10, help="untimed jobs run first")
    p.add_argument("--pool", choices=("threads", "prefork"), default="threads")
    p.add_argument("--concurrency", type=int, default=8, help="threads/processes per worker")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--redis-url",
        default=None,
        help="broker to use (its database is FLUSHed at start and end, refused if it holds "
        "keys unless --force-flush); default: a private redis-server on a free port, whose "
        "INFO counters count only this run",
    )
    p.add_argument("--force-flush", action="store_true", help="flush a non-empty --redis-url db")
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to create (and drop) the run's database with",
    )
    p.add_argument(
        "--pgbouncer",
        action="store_true",
        help="connect workers and intake through Debian's pgbouncer (PATH) in transaction "
        "mode (with ?prepare_threshold=none); adds pgbouncer's query and transaction counts",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait per phase")
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args(argv)
    if min(args.jobs, args.concurrency, args.workers) < 1 or args.warmup < 0:
        p.error("--jobs, --concurrency and --workers must be >= 1, --warmup >= 0")
    # What bench.pipeline's set-up functions read.
    args.bare_chains, args.profile_jobs, args.database = 0, 0, "postgresql"
    args.profile_clock, args.pgbouncer_prepared = "cpu", False
    return args


# --- counters -----------------------------------------------------------------------------


def _pg(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def pg_stat_statements(db_url: str) -> bool:
    """Whether the server preloads pg_stat_statements; if so, install it in the run's db."""
    with _pg(db_url) as conn:
        loaded = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
        if "pg_stat_statements" not in str(loaded[0] if loaded else ""):
            return False
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return True


def statement_calls(db_url: str) -> Counter[str]:
    """pg_stat_statements calls in the run's database, by the statement's first words."""
    with _pg(db_url) as conn:
        rows = conn.execute(
            "SELECT query, calls FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    out: Counter[str] = Counter()
    for query, calls in rows:
        words = str(query).split()
        key = " ".join(words[:3]) if words else "?"
        if words and words[0].upper() == "SELECT":
            key = "SELECT"  # the target lists differ; the kind is what a budget counts
        out[key] += int(calls)
    return out


def db_stats(admin_url: str, dbname: str) -> dict[str, int]:
    """pg_stat_database counters of the run's database (read from the admin database)."""
    keys = (
        "xact_commit",
        "xact_rollback",
        "tup_inserted",
        "tup_updated",
        "tup_deleted",
        "tup_fetched",
        "tup_returned",
    )
    with _pg(admin_url) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            f"SELECT {', '.join(keys)} FROM pg_stat_database WHERE datname = %s", (dbname,)
        ).fetchone()
    return dict(zip(keys, (int(v) for v in row or (0,) * len(keys)), strict=True))


def table_sizes(db_url: str) -> dict[str, tuple[int, int]]:
    """(rows, bytes with indexes and TOAST) of every table in the public schema."""
    from psycopg import sql

    with _pg(db_url) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        out = {}
        for name in names:
            ident = sql.Identifier(name)
            row = conn.execute(
                sql.SQL("SELECT COUNT(*), pg_total_relation_size({}) FROM {}").format(
                    sql.Literal(name), ident
                )
            ).fetchone()
            out[name] = (int(row[0]), int(row[1])) if row else (0, 0)
    return out


def redis_info(client: Any) -> dict[str, Any]:
    """Commands by name and network/memory figures of the Redis server."""
    stats = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    other = client.info("stats") | client.info("memory")
    return {
        "calls": calls,
        "net_in": int(other["total_net_input_bytes"]),
        "net_out": int(other["total_net_output_bytes"]),
        "used_memory": int(other["used_memory"]),
    }


@dataclass
class LocalCounts:
    """What this process sends to PostgreSQL (intake and polling), from SQLAlchemy events."""

    statements: int = 0
    commits: int = 0

    def attach(self, engine: Any) -> None:
        from sqlalchemy import event

        def on_execute(*_a: Any) -> None:
            self.statements += 1

        def on_commit(*_a: Any) -> None:
            self.commits += 1

        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", on_commit)


# --- the run ------------------------------------------------------------------------------


def per(value: float, jobs: int) -> float:
    return value / max(jobs, 1)


def statement_lines(
    n: int,
    own: LocalCounts,
    calls: Counter[str] | None,
    pgb0: dict[str, int] | None,
    pgb1: dict[str, int] | None,
) -> tuple[float | None, dict[str, float] | None]:
    """Print the statement counts there are; return statements per job and pgbouncer's."""
    statements: float | None = None
    if calls is not None:
        total = sum(v for k, v in calls.items() if k.split()[0].upper() not in TXN_CONTROL)
        statements = per(total, n)
        say(
            f"    statements (pg_stat_statements, BEGIN/COMMIT/ROLLBACK left out): "
            f"{statements:.1f} per job, of which by the workers "
            f"{per(total - own.statements, n):.1f}"
        )
        for key, v in calls.most_common(12):
            say(f"      {key:<40} {per(v, n):6.1f}")
    else:
        say(
            "    statements: pg_stat_statements is not in this server's "
            "shared_preload_libraries (pgbouncer's count with --pgbouncer; bench.pipeline's "
            "worker counter otherwise)"
        )
    pgb: dict[str, float] | None = None
    if pgb0 is not None and pgb1 is not None:
        pgb = {k: per(pgb1[k] - pgb0.get(k, 0), n) for k in pgb1}
        say(
            f"    through pgbouncer: {pgb['total_query_count']:.1f} queries (BEGIN/COMMIT "
            f"included) in {pgb['total_xact_count']:.1f} transactions per job, "
            f"{pgb['total_received'] / 1024:.1f} KiB received, "
            f"{pgb['total_sent'] / 1024:.1f} KiB sent"
        )
        # psycopg sends BEGIN and COMMIT/ROLLBACK as queries of their own, at most two per
        # transaction: a lower bound (pg_stat_statements counted 133 where this gave 112).
        estimate = pgb["total_query_count"] - 2 * pgb["total_xact_count"]
        say(
            f"    statements without BEGIN/COMMIT >= queries - 2 x transactions = {estimate:.1f} "
            f"per job; by the workers ~ {estimate - per(own.statements, n):.1f}"
        )
        if statements is None:
            statements = estimate

    return statements, pgb


def measure(run: Run) -> int:
    """The run; prints the per-job figures and the JSON line; returns the exit code."""
    import redis
    from sqlalchemy.engine import make_url

    args = run.args
    private_redis = args.redis_url is None
    if private_redis:
        args.redis_url, _ = procs.start_redis(run.children, run.tmp / "redis")
    env, sandbox_url, cases = pipeline.prepare(run)
    if private_redis:
        run.redis_claimed = False  # the server goes with the run; nothing to flush
    direct_url = make_url(args.pg_admin_url).set(database=run.dbname).render_as_string(False)
    has_pss = pg_stat_statements(direct_url)
    pgb_url = env["OPSGATE_DATABASE_URL"].split("?")[0] if args.pgbouncer else None

    from app.celery_app import celery_app
    from app.core.db import dispose_engine, get_engine

    local = LocalCounts()
    local.attach(get_engine())
    pipeline.start_sandbox(
        run.children, env, run.tmp, int(sandbox_url.rsplit(":", 1)[1]), run.tmp / "sandbox.db"
    )
    workers = pipeline.start_workers(run.children, "opsgate", args, env, run.tmp, "c", celery_app)
    alive = lambda: run.children.check_alive(workers)  # noqa: E731
    if cases["warmup"]:
        warm = pipeline.submit_all(run.run_id, "w", cases["warmup"])
        pipeline.wait_settled(warm, args.timeout, "warm-up", alive, workers)
    # Idle backends flush their statistics within a second (PGSTAT_MIN_INTERVAL): let the
    # warm-up's reach pg_stat_database before the first reading.
    time.sleep(1.5)

    rclient = redis.Redis.from_url(args.redis_url)
    sandbox = [c for c in run.children.started if c.name == "sandbox"]
    redis_child = [c for c in run.children.started if c.name == "redis-server"]
    groups = {
        "opsgate workers": pipeline.groups(workers),
        "sandbox": pipeline.groups(sandbox),
        **({"redis-server (the run's own)": pipeline.groups(redis_child)} if redis_child else {}),
    }
    rows0 = table_sizes(direct_url)
    pss0 = statement_calls(direct_url) if has_pss else Counter()
    pgb0 = procs.pgbouncer_stats(pgb_url, run.dbname) if pgb_url else None
    db0 = db_stats(args.pg_admin_url, run.dbname)
    r0 = redis_info(rclient)
    local0 = LocalCounts(local.statements, local.commits)
    pg_cpu0 = procs.postgres_backend_cpu(run.dbname)
    cpu0 = procs.cpu_snapshot(groups)
    t0 = time.time()

    job_ids = pipeline.submit_all(run.run_id, "t", cases["timed"])
    submitted = LocalCounts(local.statements - local0.statements, local.commits - local0.commits)
    counts = pipeline.wait_settled(job_ids, args.timeout, "timed jobs", alive, workers)
    last = pipeline.report.last_completion(job_ids)
    end = last.timestamp() if last is not None else time.time()

    cpu1 = procs.cpu_snapshot(groups)
    pg_cpu1 = procs.postgres_backend_cpu(run.dbname)
    r1 = redis_info(rclient)
    pgb1 = procs.pgbouncer_stats(pgb_url, run.dbname) if pgb_url else None
    own = LocalCounts(local.statements - local0.statements, local.commits - local0.commits)
    done = counts.get("completed", 0)
    charges = {c.charge_id for c in cases["timed"]}
    refunds = pipeline.applied_refunds(sandbox_url, charges)

    # Every backend of the run's database must exit to flush its last statistics: stop the
    # workers, the sandbox, pgbouncer (its server connections) and this process's pool.
    for child in [*workers, *sandbox, *[c for c in run.children.started if c.name == "pgbouncer"]]:
        run.children.stop(child)
    dispose_engine()
    procs.wait_until(
        lambda: not procs.postgres_backend_cpu(run.dbname), 30, "the run's backends to exit"
    )
    db1 = db_stats(args.pg_admin_url, run.dbname)
    pss1 = statement_calls(direct_url) if has_pss else Counter()
    rows1 = table_sizes(direct_url)

    n = args.jobs
    seconds = end - t0
    say()
    say(
        f"capacity: {done}/{n} jobs completed in {seconds:.2f}s = {done / seconds:.1f} jobs/s; "
        f"statuses {counts}; {refunds} stripe refunds applied for {len(charges)} jobs"
    )
    say(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")

    # CPU
    say()
    say("CPU per job (/proc):")
    for line in procs.cpu_report(cpu0, cpu1, max(done, 1), "job")[1:]:
        say(line)
    pg_backend_s = procs.cpu_delta(pg_cpu0, pg_cpu1)
    say(
        f"    {'postgres backends of the run db':<34} {pg_backend_s:7.2f}s"
        f"  {1000 * per(pg_backend_s, done):26.2f} ms/job"
    )
    cpu_ms = {
        name: 1000 * per(cpu1.by_component[name] - cpu0.by_component.get(name, 0.0), done)
        for name in cpu1.by_component
    }
    worker_ms = cpu_ms["opsgate workers"]
    pg_ms = 1000 * per(pg_backend_s, done)
    redis_ms = cpu_ms.get("redis-server (the run's own)")

    # PostgreSQL
    delta = {k: db1[k] - db0[k] for k in db1}
    say()
    say("PostgreSQL per job (pg_stat_database of the run's database, every client):")
    say("    " + ", ".join(f"{k} {per(v, n):.1f}" for k, v in delta.items()))
    say(
        f"    of which this process (intake + polling; SQLAlchemy events): "
        f"{per(own.statements, n):.1f} statements, {per(own.commits, n):.1f} commits "
        f"(intake alone: {per(submitted.statements, n):.1f} statements, "
        f"{per(submitted.commits, n):.1f} commits)"
    )
    worker_commits = per(delta["xact_commit"] - own.commits, n)
    say(f"    commits by the workers: {worker_commits:.1f} per job")
    statements, pgb = statement_lines(n, own, pss1 - pss0 if has_pss else None, pgb0, pgb1)

    # rows and bytes
    say()
    say(
        "rows written and bytes stored per job (row counts and pg_total_relation_size, "
        "before/after; pages are 8 KiB, so small tables move in steps):"
    )
    rows_per: dict[str, float] = {}
    bytes_per: dict[str, float] = {}
    for name in sorted(rows1):
        r_a, b_a = rows1[name]
        r_b, b_b = rows0.get(name, (0, 0))
        if r_a == r_b and b_a == b_b:
            continue
        rows_per[name] = per(r_a - r_b, n)
        bytes_per[name] = per(b_a - b_b, n)
        say(f"    {name:<28} {rows_per[name]:6.2f} rows  {bytes_per[name]:9.0f} bytes")
    total_rows = sum(rows_per.values())
    total_bytes = sum(bytes_per.values())
    say(
        f"    {'total':<28} {total_rows:6.2f} rows  {total_bytes:9.0f} bytes "
        f"({total_bytes * 1_000_000 / 2**30:.1f} GiB per million jobs)"
    )

    # Redis
    rcalls = Counter(r1["calls"]) - Counter(r0["calls"])
    rcalls.pop("info", None)  # our own readings
    rtotal = sum(rcalls.values())
    say()
    say(
        "Redis per job (INFO"
        + (
            "; a private server: only this run"
            if private_redis
            else "; a shared server: other clients included"
        )
        + "):"
    )
    # Commands a Lua script runs count too: the breaker's script reads one HMGET per window
    # bucket on every downstream call, so HMGET dominates while the round trips are EVALSHAs.
    say(
        f"    {per(rtotal, n):.1f} commands (inside Lua scripts included): "
        + ", ".join(f"{k} {per(v, n):.1f}" for k, v in rcalls.most_common(10))
    )
    net_in, net_out = per(r1["net_in"] - r0["net_in"], n), per(r1["net_out"] - r0["net_out"], n)
    say(
        f"    {net_in / 1024:.1f} KiB in, {net_out / 1024:.1f} KiB out; used_memory "
        f"{(r1['used_memory'] - r0['used_memory']) / 1024:+.0f} KiB over the run"
    )

    # ceilings
    say()
    say(
        "ceilings from CPU alone (1000 ms / ms per job; each component on one core of this "
        "machine, nothing else in its way):"
    )
    ceilings = {
        "worker_core": 1000 / worker_ms if worker_ms else None,
        "postgres_core": 1000 / pg_ms if pg_ms else None,
        "redis": 1000 / redis_ms if redis_ms else None,
    }
    for k, v in ceilings.items():
        say(f"    {k:<16} " + (f"{v:8.0f} jobs/s" if v else "n/a"))

    valid = done == n and refunds == len(charges)
    result = {
        "metric": "capacity_per_job",
        "valid": valid,
        "jobs": n,
        "completed": done,
        "jobs_per_s": round(done / seconds, 2) if seconds > 0 else 0.0,
        "workers": args.workers,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "pgbouncer": args.pgbouncer,
        "worker_cpu_ms": round(worker_ms, 2),
        "sandbox_cpu_ms": round(cpu_ms["sandbox"], 2),
        "postgres_backend_cpu_ms": round(pg_ms, 2),
        "redis_cpu_ms": round(redis_ms, 3) if redis_ms is not None else None,
        "bench_process_cpu_ms": round(cpu_ms["bench process (intake + polling)"], 2),
        "pg_statements": round(statements, 1) if statements is not None else None,
        "pg_statements_source": (
            "pg_stat_statements" if has_pss else "pgbouncer (queries - 2 x xacts)" if pgb else None
        ),
        "pg_statements_workers": (
            round(statements - per(own.statements, n), 1) if statements is not None else None
        ),
        "pgbouncer_queries": round(pgb["total_query_count"], 1) if pgb else None,
        "pgbouncer_xacts": round(pgb["total_xact_count"], 1) if pgb else None,
        "pg_commits": round(per(delta["xact_commit"], n), 2),
        "pg_commits_workers": round(worker_commits, 2),
        "pg_rollbacks": round(per(delta["xact_rollback"], n), 2),
        "pg_tup_inserted": round(per(delta["tup_inserted"], n), 1),
        "pg_tup_updated": round(per(delta["tup_updated"], n), 1),
        "pg_tup_deleted": round(per(delta["tup_deleted"], n), 1),
        "pg_tup_fetched": round(per(delta["tup_fetched"], n), 1),
        "intake_statements": round(per(submitted.statements, n), 1),
        "intake_commits": round(per(submitted.commits, n), 2),
        "rows_per_table": {k: round(v, 2) for k, v in rows_per.items()},
        "rows_total": round(total_rows, 2),
        "bytes_per_table": {k: round(v) for k, v in bytes_per.items()},
        "bytes_total": round(total_bytes),
        "redis_commands": round(per(rtotal, n), 1),
        "redis_commands_by_name": {k: round(per(v, n), 2) for k, v in rcalls.most_common()},
        "redis_net_in_bytes": round(net_in),
        "redis_net_out_bytes": round(net_out),
        "redis_private": private_redis,
        "ceiling_jobs_per_s": {k: round(v, 1) if v else None for k, v in ceilings.items()},
        "load_average": round(os.getloadavg()[0], 2),
        "run_seconds": round(time.monotonic() - run.started, 1),
    }
    say()
    print(json.dumps(result), flush=True)
    return 0 if valid else 1


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; always clean up what it started."""
    return procs.guarded(Run(parse_args(argv)), measure, "opsgate-capacity")


if __name__ == "__main__":
    sys.exit(main())
