"""Benchmark: signed Zendesk webhook accepts/s through opsgate's real intake, against two
baselines served the same way, in one run, on this machine: a FastAPI endpoint that commits
one row to the same PostgreSQL (the floor for "accepted means never lost"; the targets are
against it) and one that writes nothing (printed for reference).

What it measures
  opsgate side: `python -m app api` (uvicorn, one process) answering POST /webhooks/zendesk:
    content-type and size checks, HMAC-SHA256 signature verification (5-minute window), JSON
    parse, mapping to a submission (pydantic), ONE PostgreSQL transaction writing the job, its
    job_event, audit event and outbox row (one statement) and the delivery, then 202, then
    the after-commit send of the plan message to Redis (no database work: the row stays
    pending until the plan stage or the relay marks it): the request's background task hands
    it to the process's sender thread (app/jobs/sender.py), which publishes the messages of
    all accepts waiting at that moment in one pipelined write (Celery `send_task` into a
    kombu `Producer.batch`).
  floor side: bench/intake_floor.py, a FastAPI endpoint that INSERTs the body's SHA-256 into
    a table of the run's database and COMMITs (threadpool, psycopg through a SQLAlchemy Core
    engine made by opsgate's own `make_engine`, so the same pool settings), then 202.
  bare side: bench/intake_bare.py, a FastAPI endpoint that reads the body and answers 202,
    served by `python -m uvicorn` with the options `opsgate api` gives uvicorn (one process,
    loop/http "auto" = uvloop/httptools when installed, log level warning, no access log).
  All sides get the same client (bench/intake_client.py): distinct Zendesk event deliveries
  (distinct event id, so each one creates a job), signed exactly as Zendesk signs them, all
  built before the clock starts; `--concurrency` requests in flight on keep-alive
  connections; `--warmup` untimed requests first; then `--requests` timed ones. The clock
  runs from the moment the connections are open until the last answer arrived. The bare
  side runs first, then the floor, then opsgate (each of `--rounds` rounds runs all).

How to read the output
  Against the floor (targets): `floor_ratio` = opsgate accepts/s / floor accepts/s (>= 0.5),
  `floor_cpu_ratio` = CPU ms per request of the opsgate api process / of the floor server
  process (<= 2), `floor_p99_ratio` = opsgate p99 / floor p99 (<= 2); latencies are as the
  client saw them. `ratio` = opsgate accepts/s / no-write bare accepts/s, for reference.
  Every answer must be 202: any other status or a transport error makes the run invalid
  (`valid` false, exit status 1). After the timed run the database is checked: one job per
  accepted request (warm-up included), one delivery row and one outbox row each, and one
  message per job waiting in Redis on the `plan` queue (the after-commit send reached the
  broker).
  Before the JSON line: CPU seconds per component in each timed window (the server, the load
  client, PostgreSQL, Redis: the machine has 2 cores and all of them share it), PostgreSQL
  work per request and, when a floor target is missed (or with --profile), an extra
  untimed batch against the API run under bench/intake_profiled_api.py: per-phase wall-clock
  timings of a request (signature, parse, thread hand-off, the transaction and each SQL
  statement, the publish) and the top of a cProfile (CPU time) of the event-loop thread and
  of the threadpool threads. The last line is one JSON object.

It creates a fresh PostgreSQL database (dropped at the end), FLUSHes the Redis database it is
given (start and end), starts and always stops its three servers, also on error or Ctrl-C.

    .venv/bin/python -m bench.intake [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as `python bench/intake.py`
    sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402
from bench.intake_client import LoadResult, build_requests, run_load  # noqa: E402
from bench.procs import (  # noqa: E402
    Child,
    Children,
    CpuSnapshot,
    cpu_report,
    cpu_snapshot,
    other_load,
    tail,
    wait_until,
)

TARGET = 0.5  # throughput against the no-write endpoint (reference since the floor exists)
FLOOR_RATE = 0.5  # opsgate accepts/s over the write floor's, at least
FLOOR_CPU = 2.0  # opsgate api CPU per request over the floor server's, at most
FLOOR_P99 = 2.0  # opsgate p99 over the floor's, at most
HOST = "127.0.0.1"
CLIENT = "load client (this process)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.intake",
        description="Measure signed Zendesk webhook accepts/s through `opsgate api` against a "
        "bare FastAPI endpoint served with the same uvicorn settings, and print "
        "the ratio (target >= 0.5) and the p99 latency of the opsgate accepts. "
        "The last output line is a JSON object.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--requests", type=int, default=2000, help="timed requests per side (per round)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="requests in flight (keep-alive connections), both sides",
    )
    p.add_argument(
        "--warmup", type=int, default=100, help="untimed requests sent to each server first"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="bare-then-opsgate rounds; rates are totals over all rounds",
    )
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to create (and drop) the run's database with",
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/12",
        help="opsgate's Redis; this database is FLUSHed at start and end",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the profiled batch even when the ratio reaches the target",
    )
    p.add_argument(
        "--profile-requests",
        type=int,
        default=1000,
        help="requests of the extra, untimed, profiled batch (0: no profile)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds one request may take before it counts as an error",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=10.0,
        help="before each timed window, wait up to this many seconds for the "
        "machine's other CPU load to drop below 15%% (0: do not wait)",
    )
    p.add_argument(
        "--keep-temp",
        action="store_true",
        help="keep the temp dir (server logs, profiles) for inspection",
    )
    args = p.parse_args(argv)
    if (
        min(args.requests, args.concurrency, args.rounds) < 1
        or args.warmup < 0
        or args.profile_requests < 0
    ):
        p.error(
            "--requests, --concurrency and --rounds must be >= 1; --warmup and "
            "--profile-requests >= 0"
        )
    return args


def say(line: str = "") -> None:
    print(line, flush=True)


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    """One started HTTP server."""

    name: str
    child: Child
    port: int


def free_port() -> int:
    from bench.pipeline import free_port as _free_port

    return _free_port()


def start_server(
    children: Children,
    name: str,
    argv: list[str],
    env: dict[str, str],
    log: Path,
    port: int,
    ready_path: str,
) -> Server:
    """Start a server and wait until GET ready_path answers 200."""
    import httpx

    child = children.spawn(name, argv, env, log)

    def ready() -> bool:
        try:
            return httpx.get(f"http://{HOST}:{port}{ready_path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(
        ready,
        60,
        f"{name} on port {port}",
        interval=0.2,
        alive=lambda: children.check_alive([child]),
    )
    return Server(name, child, port)


def bare_argv(port: int, module: str = "bench.intake_bare") -> list[str]:
    """uvicorn with the options `opsgate api` passes to uvicorn.run (app/cli/services.py):
    one process, loop and http 'auto', log level warning, access log off."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "auto",
        "--http",
        "auto",
        "--workers",
        "1",
    ]


def opsgate_argv(port: int, profile_dir: Path | None = None, skip: int = 0) -> list[str]:
    if profile_dir is not None:
        return [
            sys.executable,
            "-m",
            "bench.intake_profiled_api",
            str(profile_dir),
            str(skip),
            "api",
            "--host",
            HOST,
            "--port",
            str(port),
        ]
    return [sys.executable, "-m", "app", "api", "--host", HOST, "--port", str(port)]


def server_stack(pid: int) -> str:
    """Which event loop and HTTP parser the server process has loaded (from its memory map)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    loop = "uvloop" if "/uvloop/" in maps else "asyncio"
    http = "httptools" if "/httptools/" in maps else "h11"
    return f"{loop} + {http}"


# --- one timed side ---------------------------------------------------------------------------


@dataclass
class Side:
    """All timed load runs against one server, with the CPU accounting of each window."""

    name: str
    runs: list[LoadResult] = field(default_factory=list)
    cpu: list[list[str]] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def latencies(self) -> list[float]:
        return [x for r in self.runs for x in r.latencies]

    def percentile_ms(self, q: float) -> float:
        values = sorted(self.latencies())
        if not values:
            return float("nan")
        return 1000 * values[min(len(values) - 1, max(0, int(round(q * len(values))) - 1))]


def snapshot(server: Server) -> CpuSnapshot:
    snap = cpu_snapshot({server.name: [server.child.proc.pid]})
    snap.by_component[CLIENT] = snap.by_component.pop("bench process (intake + polling)")
    return snap


def load(args: argparse.Namespace, server: Server, secret: str, tag: str, count: int) -> LoadResult:
    """Build `count` signed requests (untimed), then send them."""
    reqs = build_requests(HOST, server.port, secret, count, tag)
    return run_load(HOST, server.port, reqs, args.concurrency, args.timeout)


def wait_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (up to max_wait s) until the machine's CPU use over 0.5 s is below threshold
    (our servers are idle then, so what is left is other load); returns the last share."""
    from bench.procs import system_busy_seconds

    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = system_busy_seconds()
        time.sleep(0.5)
        b1, t1 = system_busy_seconds()
        share = (b1 - b0) / max(t1 - t0, 1e-9)
        if share < threshold or time.monotonic() >= deadline:
            return share


def timed_side(
    args: argparse.Namespace, side: Side, server: Server, secret: str, tag: str, warm: bool
) -> LoadResult:
    """Warm-up (untimed) when asked, then one timed run with CPU accounting."""
    if warm and args.warmup:
        w = load(args, server, secret, f"{tag}-warm", args.warmup)
        if w.errors:
            say(f"  {server.name} warm-up: {w.errors} errors: {w.failures[:3]}")
    reqs = build_requests(HOST, server.port, secret, args.requests, tag)
    if args.wait_quiet > 0:
        share = wait_quiet(args.wait_quiet)
        if share >= 0.15:
            say(
                f"  (the machine is still {100 * share:.0f}% busy with other work after "
                f"waiting {args.wait_quiet:.0f}s; measuring anyway)"
            )
    before = snapshot(server)
    result = run_load(HOST, server.port, reqs, args.concurrency, args.timeout)
    after = snapshot(server)
    side.runs.append(result)
    side.cpu.append(cpu_report(before, after, max(result.accepted, 1), "req"))
    side.other.append(other_load(before, after))
    for name in after.by_component:
        side.cpu_ms[name] += after.by_component[name] - before.by_component.get(name, 0.0)
    side.cpu_ms["whole machine busy"] += after.busy - before.busy
    say(
        f"  {server.name}: {result.accepted}/{result.requests} accepted in "
        f"{result.seconds:.2f}s = {result.rate:.1f}/s; latency p50 "
        f"{result.percentile_ms(0.50):.2f} ms, p99 {result.percentile_ms(0.99):.2f} ms, "
        f"max {result.percentile_ms(1.0):.2f} ms"
        + (f"; statuses {dict(result.statuses)}" if result.errors else "")
    )
    for failure in result.failures[:5]:
        say(f"    {failure}")
    return result


# --- checks on the opsgate side ---------------------------------------------------------------


def db_counts(db_url: str) -> dict[str, int]:
    """Jobs, deliveries, and jobs whose plan message is taken or still due (run's database)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT COUNT(*) FROM jobs),"
            " (SELECT COUNT(*) FROM deliveries),"
            " (SELECT COUNT(*) FROM jobs WHERE message_due_at IS NULL),"
            " (SELECT COUNT(*) FROM jobs WHERE message_due_at IS NOT NULL),"
            " (SELECT COUNT(*) FROM job_events), (SELECT COUNT(*) FROM audit_events)"
        ).fetchone()
    assert row is not None
    keys = (
        "jobs",
        "deliveries",
        "outbox_published",
        "outbox_pending",
        "job_events",
        "audit_events",
    )
    return dict(zip(keys, (int(v) for v in row), strict=True))


def table_scans(db_url: str) -> dict[str, tuple[int, ...]]:
    """Per table: (seq scans, rows read by them, index scans, rows fetched by them, live
    rows) from pg_stat_user_tables (flushed by PostgreSQL at most once a second)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0),"
            " COALESCE(idx_tup_fetch, 0), n_live_tup FROM pg_stat_user_tables"
        ).fetchall()
    return {r[0]: tuple(int(v) for v in r[1:]) for r in rows}


def index_scans(db_url: str) -> dict[str, tuple[int, int, int]]:
    """Per index: (scans, index entries read, live table rows fetched)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT indexrelname, idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes"
        ).fetchall()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def index_scan_lines(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]], n: int
) -> list[str]:
    """Index use per request in the timed window; entries read >> rows fetched means the
    scan walks entries of dead or non-matching row versions."""
    lines = ["  PostgreSQL index scans per opsgate request (pg_stat_user_indexes):"]
    for name in sorted(after, key=lambda k: -(after[k][1] - before.get(k, (0, 0, 0))[1])):
        b = before.get(name, (0, 0, 0))
        d = [after[name][k] - b[k] for k in range(3)]
        if d[0]:
            lines.append(
                f"    {name:<34} {d[0] / n:5.2f} scans reading {d[1] / n:8.1f} "
                f"entries, fetching {d[2] / n:5.1f} rows"
            )
    return lines


def table_scan_lines(
    before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]], n: int
) -> list[str]:
    """Scans per request by table in the timed window (a growing seq-scan row count per
    request means a query reads the whole table)."""
    lines = ["  PostgreSQL scans per opsgate request by table (pg_stat_user_tables):"]
    for table in sorted(after):
        b = before.get(table, (0, 0, 0, 0, 0))
        d = [after[table][k] - b[k] for k in range(4)]
        if any(d):
            lines.append(
                f"    {table:<14} seq scans {d[0] / n:5.2f} reading {d[1] / n:8.1f} "
                f"rows; index scans {d[2] / n:5.2f} fetching {d[3] / n:5.1f} rows; "
                f"{after[table][4]} live rows at the end"
            )
    return lines


def queued_in_redis(redis_client: Any, queue: str = "plan") -> int:
    """Messages waiting on a Celery queue (kombu keeps one list per priority step)."""
    total = 0
    for key in redis_client.scan_iter(match=f"{queue}*"):
        if key == queue.encode() or key.startswith(queue.encode() + b"\x06\x16"):
            total += int(redis_client.llen(key))
    return total


def wait_sent(
    db_url: str, redis_client: Any, timeout: float = 15.0
) -> tuple[dict[str, int], float]:
    """Counts once every job's message waits in Redis (or the timeout passed), and how long it
    took: the after-commit send leaves the outbox row pending, so Redis is where it shows."""
    t0 = time.monotonic()
    counts = db_counts(db_url)
    while queued_in_redis(redis_client) < counts["jobs"] and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
        counts = db_counts(db_url)
    return counts, time.monotonic() - t0


# --- the profiled batch -----------------------------------------------------------------------


def _ms_stats(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, max(0, int(round(0.99 * len(ordered))) - 1))]
    return (
        f"avg {1000 * statistics.fmean(values):7.3f}  p50 "
        f"{1000 * statistics.median(values):7.3f}  p99 {1000 * p99:7.3f}"
    )


def phase_lines(data: dict[str, Any]) -> list[str]:
    """Per-phase wall-clock timings (and thread CPU where measured), per request."""
    n = max(int(data["recorded_requests"]), 1)
    phases: dict[str, list[list[float]]] = data["phases"]
    lines = [
        f"  per-phase timings over {n} profiled requests (ms; 'per req' = count and "
        "summed wall time per request; concurrency inflates waits):"
    ]
    lines.append(f"    {'phase':<62} {'per req':>14}  {'wall ms per call':<40} cpu ms/call")

    def line(name: str) -> str:
        samples = phases[name]
        walls = [s[0] for s in samples]
        cpus = [s[1] for s in samples if s[1] >= 0]
        cpu = f"{1000 * statistics.fmean(cpus):7.3f}" if cpus else "      -"
        return (
            f"    {name:<62} {len(samples) / n:4.1f}x {1000 * sum(walls) / n:7.2f}  "
            f"{_ms_stats(walls):<40} {cpu}"
        )

    non_sql = [k for k in phases if not k.startswith("sql: ")]
    sql = sorted((k for k in phases if k.startswith("sql: ")), key=lambda k: -len(phases[k]))
    for name in sorted(
        non_sql,
        key=lambda k: (
            not k.startswith("request"),
            k.startswith(" "),
            -sum(s[0] for s in phases[k]),
        ),
    ):
        lines.append(line(name))
    if sql:
        calls = sum(len(phases[k]) for k in sql)
        wall = sum(s[0] for k in sql for s in phases[k])
        lines.append(
            f"  SQL statements: {calls / n:.1f} round trips per request, "
            f"{1000 * wall / n:.2f} ms of statement wall time per request:"
        )
        for name in sql:
            lines.append(line(name))
    return lines


def _library(filename: str) -> str:
    from bench.report import _library as lib

    return lib(filename)


def cprofile_lines(files: list[Path], title: str, n: int, top: int = 12) -> list[str]:
    """Own CPU time by library, then the top functions by own and by cumulative time."""
    files = [f for f in files if f.exists() and f.stat().st_size > 0]
    if not files:
        return [f"  ({title}: no profile data)"]
    stats = pstats.Stats(str(files[0]))
    for extra in files[1:]:
        stats.add(str(extra))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    lines = [
        f"  {title}: {1000 * total / n:.3f} ms CPU per request "
        f"({len(files)} profile{'s' if len(files) > 1 else ''})"
    ]
    by_lib: dict[str, float] = defaultdict(float)
    for (filename, _line, _func), (_cc, _nc, tt, _ct, _callers) in raw.items():
        by_lib[_library(filename)] += tt
    lines.append("    own time by library (ms per request, share):")
    for lib, tt in sorted(by_lib.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(
            f"      {lib:<48} {1000 * tt / n:7.3f} ms  {100 * tt / max(total, 1e-9):5.1f}%"
        )
    for key, label in (("tottime", "by own time"), ("cumulative", "by cumulative time")):
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.sort_stats(key).print_stats(top)
        body = buf.getvalue().splitlines()
        start = next((i for i, ln in enumerate(body) if ln.lstrip().startswith("ncalls")), 0)
        lines.append(f"    --- top {top} {label} ---")
        for ln in body[start:]:
            if ln.strip():
                lines.append("      " + _shorten(ln))
    return lines


def _shorten(line: str) -> str:
    """Cut site-packages and project paths out of a pstats line."""
    for marker in ("/site-packages/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in line:
            head, _, rest = line.partition(marker)
            prefix = head[: head.rfind(" ") + 1] if " " in head else ""
            line = prefix + rest
    return line.replace(str(ROOT) + "/", "")


def run_profile(args: argparse.Namespace, run: Run, env: dict[str, str], secret: str) -> list[str]:
    """An extra, untimed batch against the API under bench/intake_profiled_api.py."""
    import httpx

    prof_dir = run.tmp / "profile"
    port = free_port()
    server = start_server(
        run.children,
        "opsgate api (profiled)",
        opsgate_argv(port, prof_dir, args.warmup),
        env,
        run.tmp / "opsgate-profiled.log",
        port,
        "/healthz",
    )
    if args.warmup:
        load(args, server, secret, f"{run.run_id}-pw", args.warmup)
    result = load(args, server, secret, f"{run.run_id}-p", args.profile_requests)
    wait_sent(run.db_url, run.redis_client)
    time.sleep(0.3)  # the last publish's thread leaves its profiled call
    try:
        httpx.post(f"http://{HOST}:{port}/_bench/profile-dump", timeout=60)
    except httpx.HTTPError as exc:
        lines_err = f"  (profile dump request failed: {exc})"
        say(lines_err)
    run.children.stop(server.child)
    lines = [
        f"  profiled batch: {result.accepted}/{result.requests} accepted at "
        f"{result.rate:.1f}/s under the profiler (not comparable with the timed figures);"
        f" p99 {result.percentile_ms(0.99):.2f} ms"
    ]
    phases_file = prof_dir / "phases.json"
    if not phases_file.exists():
        return [
            *lines,
            f"  (no profile written; server log tail:\n{tail(run.tmp / 'opsgate-profiled.log')})",
        ]
    data = json.loads(phases_file.read_text())
    n = max(int(data["recorded_requests"]), 1)
    lines += phase_lines(data)
    lines += cprofile_lines(
        [prof_dir / "loop.pstats"], "event-loop thread (uvicorn, Starlette, FastAPI, endpoint)", n
    )
    lines += cprofile_lines(
        sorted(prof_dir.glob("thread-*.pstats")),
        "threadpool threads (accept_delivery) and the sender thread",
        n,
    )
    return [*lines, *cpu_split_lines(data, prof_dir, n)]


def cpu_split_lines(data: dict[str, Any], prof_dir: Path, n: int) -> list[str]:
    """The opsgate api's CPU per request in three parts (profiled; the profiler inflates all
    of them, the shares travel): the event loop (HTTP, routing, middleware, signature and
    parsing), the transaction in the threadpool, and the after-commit send to Redis."""
    parts: dict[str, float] = {}
    files = [prof_dir / "loop.pstats"]
    if files[0].exists() and files[0].stat().st_size:
        raw: dict[Any, Any] = pstats.Stats(str(files[0])).stats  # type: ignore[attr-defined]
        parts["event loop (HTTP, routing, middleware, signature, parsing)"] = sum(
            v[2] for v in raw.values()
        )
    for label, phase in (
        ("the transaction (threadpool: the INSERTs and COMMIT)", "intake.accept_delivery"),
        ("the after-commit send (the sender thread's batches)", "sender: one batch"),
    ):
        for name, samples in data["phases"].items():
            if name.startswith(phase):
                parts[label] = sum(s[1] for s in samples if s[1] >= 0)
    total = sum(parts.values()) or 1e-9
    lines = ["  the opsgate api's CPU per request in three parts (profiled thread CPU):"]
    for label, used in parts.items():
        lines.append(f"    {label:<62} {1000 * used / n:7.3f} ms  {100 * used / total:5.1f}%")
    return lines


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    """What one benchmark run owns and must clean up."""

    args: argparse.Namespace
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    started: float = field(default_factory=time.monotonic)
    tmp: Path = Path()
    children: Children = field(default_factory=lambda: Children(cwd=ROOT))
    redis_client: Any = None
    db_created: bool = False
    db_url: str = ""

    @property
    def dbname(self) -> str:
        return f"opsgate_bench_intake_{self.run_id}"

    def cleanup(self) -> None:
        """Stop both servers, flush Redis, drop the database, remove the temp dir."""
        args = self.args
        self.children.stop_all()
        try:
            from app.core.db import dispose_engine

            dispose_engine()
        except Exception:
            pass
        if self.redis_client is not None:
            try:
                self.redis_client.flushdb()
            except Exception as exc:
                print(f"bench: could not flush {args.redis_url}: {exc}", file=sys.stderr)
        if self.db_created:
            from bench.pipeline import drop_database

            try:
                drop_database(args.pg_admin_url, self.dbname)
            except Exception as exc:
                print(f"bench: could not drop database {self.dbname}: {exc}", file=sys.stderr)
        if args.keep_temp:
            print(f"bench: temp dir kept at {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def prepare(run: Run) -> tuple[dict[str, str], str, str]:
    """Redis flushed, the database created and migrated; returns (env, db url, secret)."""
    import redis

    from bench.pipeline import apply_env_here, create_database

    args = run.args
    run.redis_client = redis.Redis.from_url(args.redis_url)
    run.redis_client.flushdb()
    db_url = create_database(args.pg_admin_url, run.dbname)
    run.db_created, run.db_url = True, db_url
    secret = secrets.token_urlsafe(32)
    env = dict(os.environ)
    for key in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPSGATE_API_URL",
        "OPSGATE_API_KEY",
        "OPSGATE_LOG_LEVEL",
    ):
        env.pop(key, None)
    env.update(
        OPSGATE_DATABASE_URL=db_url,
        OPSGATE_REDIS_URL=args.redis_url,
        OPSGATE_ZENDESK_WEBHOOK_SECRET=secret,
        OPSGATE_HOME=str(run.tmp),
        OPSGATE_ZENDESK_TAGS="refund",
        PYTHONPATH=str(ROOT),
    )
    apply_env_here(env)
    migrate = subprocess.run(
        [sys.executable, "-m", "app", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"`python -m app db upgrade` failed:\n{migrate.stdout}{migrate.stderr}")
    return env, db_url, secret


@dataclass
class DbStats:
    """PostgreSQL's counters for the run's database at one moment."""

    database: dict[str, int] | None
    tables: dict[str, tuple[int, ...]]
    indexes: dict[str, tuple[int, int, int]]

    @classmethod
    def read(cls, run: Run) -> DbStats:
        from bench import report

        return cls(report.db_activity(run.dbname), table_scans(run.db_url), index_scans(run.db_url))


@dataclass
class Outcome:
    """The three sides' figures and the checks of the opsgate side."""

    bare: Side
    floor: Side
    ops: Side
    stacks: dict[str, str]
    db_before: DbStats
    db_after: DbStats
    counts: dict[str, int] = field(default_factory=dict)
    in_redis: int = 0
    valid: bool = False

    @property
    def ratio(self) -> float:
        return self.ops.rate / self.bare.rate if self.bare.rate else 0.0

    @property
    def floor_ratio(self) -> float:
        return self.ops.rate / self.floor.rate if self.floor.rate else 0.0

    @property
    def floor_cpu_ratio(self) -> float:
        """CPU per request of the opsgate api process over the floor server process's."""
        ops, floor = server_ms(self.ops, OPS), server_ms(self.floor, FLOOR)
        return ops / floor if floor else float("inf")

    @property
    def floor_p99_ratio(self) -> float:
        return self.ops.percentile_ms(0.99) / max(self.floor.percentile_ms(0.99), 1e-9)

    @property
    def floor_met(self) -> bool:
        return (
            self.floor_ratio >= FLOOR_RATE
            and self.floor_cpu_ratio <= FLOOR_CPU
            and self.floor_p99_ratio <= FLOOR_P99
        )


BARE, FLOOR, OPS = "bare fastapi", "floor fastapi+pg", "opsgate api"


def server_ms(side: Side, name: str) -> float:
    """CPU ms per accepted request of one server process in a side's timed windows."""
    return 1000 * side.cpu_ms[name] / max(side.accepted, 1)


def start_servers(run: Run, env: dict[str, str]) -> tuple[Server, Server, Server, dict[str, str]]:
    """The bare server, the write floor and `opsgate api`, all up; and the stack each loaded."""
    bare_port, floor_port, ops_port = free_port(), free_port(), free_port()
    bare = start_server(
        run.children,
        BARE,
        bare_argv(bare_port),
        env,
        run.tmp / "bare.log",
        bare_port,
        "/openapi.json",
    )
    floor = start_server(
        run.children,
        FLOOR,
        bare_argv(floor_port, "bench.intake_floor"),
        env,
        run.tmp / "floor.log",
        floor_port,
        "/openapi.json",
    )
    ops = start_server(
        run.children,
        OPS,
        opsgate_argv(ops_port),
        env,
        run.tmp / "opsgate.log",
        ops_port,
        "/healthz",
    )
    stacks = {s.name: server_stack(s.child.proc.pid) for s in (bare, floor, ops)}
    same = len(set(stacks.values())) == 1
    say(
        "servers: "
        + ", ".join(f"{k}: uvicorn {v}" for k, v in stacks.items())
        + (" (same stack)" if same else " <- DIFFERENT stacks: the comparison is not like for like")
    )
    return bare, floor, ops, stacks


def run_rounds(
    run: Run, bare: Server, floor: Server, ops: Server, secret: str
) -> tuple[Side, Side, Side, DbStats]:
    """Every round: the bare side, the floor, then opsgate (warm-ups in the first round)."""
    args = run.args
    bare_side, floor_side, ops_side = Side("bare"), Side("floor"), Side("opsgate")
    before: DbStats | None = None
    for r in range(args.rounds):
        say(f"round {r + 1}/{args.rounds}:")
        timed_side(args, bare_side, bare, secret, f"{run.run_id}-b{r}", warm=r == 0)
        timed_side(args, floor_side, floor, secret, f"{run.run_id}-f{r}", warm=r == 0)
        if r == 0 and args.warmup:
            w = load(args, ops, secret, f"{run.run_id}-ow", args.warmup)
            if w.errors:
                say(f"  opsgate warm-up: {w.errors} errors: {w.failures[:3]}")
            wait_sent(run.db_url, run.redis_client)
        if before is None:
            time.sleep(1.1)  # PostgreSQL flushes its statistics at most once a second
            before = DbStats.read(run)
        timed_side(args, ops_side, ops, secret, f"{run.run_id}-o{r}", warm=False)
    assert before is not None
    return bare_side, floor_side, ops_side, before


def check(run: Run, out: Outcome) -> None:
    """One job, delivery and published message per accepted request (warm-up included)."""
    args, ops_side = run.args, out.ops
    out.counts, drain = wait_sent(run.db_url, run.redis_client)
    out.in_redis = queued_in_redis(run.redis_client)
    counts, expected = out.counts, args.warmup + ops_side.accepted
    say(
        f"after the run: {counts['jobs']} jobs (expected {expected}: {args.warmup} warm-up "
        f"+ {ops_side.accepted} timed accepts), {counts['deliveries']} deliveries, outbox "
        f"messages {counts['outbox_published']} taken / {counts['outbox_pending']} due "
        f"(no worker runs: a stage or the relay marks them), {out.in_redis} messages "
        f"waiting on the Redis `plan` queue (checked {1.1 + drain:.1f}s after the last answer)"
    )
    errors = ops_side.errors + out.bare.errors + out.floor.errors
    stored = (
        counts["jobs"] == expected
        and counts["deliveries"] == expected
        and counts["outbox_pending"] + counts["outbox_published"] == expected
        and out.in_redis == expected
    )
    out.valid = errors == 0 and stored
    if errors:
        say(
            f"INVALID: {ops_side.errors} opsgate, {out.floor.errors} floor and "
            f"{out.bare.errors} bare requests were not answered 202"
        )
    elif not stored:
        say(
            "INVALID: the database or Redis does not hold one job, delivery, outbox row and "
            "sent message per accepted request"
        )


def headline(out: Outcome) -> None:
    """The ratios against the floor, the reference ratio, and how quiet the machine was."""
    ops_side, floor_side, bare_side = out.ops, out.floor, out.bare
    say(
        f"opsgate {ops_side.rate:.1f} accepts/s, p50 {ops_side.percentile_ms(0.5):.2f} ms, "
        f"p99 {ops_side.percentile_ms(0.99):.2f} ms, {server_ms(ops_side, OPS):.3f} ms CPU/req"
    )
    say(
        f"floor (one committed row) {floor_side.rate:.1f} accepts/s, p50 "
        f"{floor_side.percentile_ms(0.5):.2f} ms, p99 {floor_side.percentile_ms(0.99):.2f} ms, "
        f"{server_ms(floor_side, FLOOR):.3f} ms CPU/req"
    )
    say(
        f"bare (no write, reference) {bare_side.rate:.1f} accepts/s, p50 "
        f"{bare_side.percentile_ms(0.5):.2f} ms, p99 {bare_side.percentile_ms(0.99):.2f} ms, "
        f"{server_ms(bare_side, BARE):.3f} ms CPU/req"
    )
    say(
        f"against the floor: throughput {out.floor_ratio:.3f} (target >= {FLOOR_RATE}), "
        f"CPU per request {out.floor_cpu_ratio:.2f}x (target <= {FLOOR_CPU}x), p99 "
        f"{out.floor_p99_ratio:.2f}x (target <= {FLOOR_P99}x): "
        + ("all met" if out.floor_met else "NOT all met")
        + f"; against the no-write endpoint: {out.ratio:.3f}"
    )
    others = bare_side.other + floor_side.other + ops_side.other
    noisy = max(others) > 0.1
    say(
        f"CPU used by processes outside this run: "
        f"{100 * max(bare_side.other):.0f}% of the machine (bare windows), "
        f"{100 * max(floor_side.other):.0f}% (floor windows), "
        f"{100 * max(ops_side.other):.0f}% (opsgate windows)"
        + (" (the figures are disturbed; rerun on a quiet machine)" if noisy else "")
    )


def cpu_lines(run: Run, out: Outcome) -> list[str]:
    """CPU per component in each timed window, and what the figures imply."""
    lines: list[str] = []
    for side in (out.bare, out.floor, out.ops):
        lines.append(f" {side.name} side:")
        for k, window in enumerate(side.cpu):
            if run.args.rounds > 1:
                lines.append(f"  round {k + 1}:")
            lines.extend(window)
        if run.args.rounds > 1:
            n = max(side.accepted, 1)
            lines.append("  all rounds, CPU ms per accepted request:")
            lines.extend(
                f"    {name:<36} {1000 * used / n:7.3f} ms/req"
                for name, used in side.cpu_ms.items()
            )

    def per_req(side: Side, name: str | None = None) -> float:
        if name is None:
            used = sum(v for k, v in side.cpu_ms.items() if k != "whole machine busy")
        else:
            used = side.cpu_ms[name]
        return 1000 * used / max(side.accepted, 1)

    api_ms, bare_ms = per_req(out.ops, OPS), per_req(out.bare, BARE)
    floor_ms = per_req(out.floor, FLOOR)
    lines.append(
        f"  the opsgate api process used {api_ms:.2f} ms of CPU per accept: one Python "
        f"process (one GIL) tops out near {1000 / max(api_ms, 1e-9):.0f} accepts/s "
        f"whatever the concurrency; measured {out.ops.rate:.0f}/s"
    )
    lines.append(
        f"  CPU per request of this run's processes (server, client, PostgreSQL, Redis): "
        f"bare {per_req(out.bare):.3f} ms, opsgate {per_req(out.ops):.3f} ms "
        f"({per_req(out.ops) / max(per_req(out.bare), 1e-9):.0f}x); the bare server alone "
        f"{bare_ms:.3f} ms"
    )
    lines.append(
        f"  against the write floor: floor server {floor_ms:.3f} ms per request, all its "
        f"processes {per_req(out.floor):.3f} ms; CPU <= {FLOOR_CPU}x needs the opsgate api "
        f"process at or under {FLOOR_CPU * floor_ms:.3f} ms (it used {api_ms:.3f} ms, "
        f"{api_ms - floor_ms:+.3f} ms over the floor's)"
    )
    return lines


def db_lines(out: Outcome) -> list[str]:
    """PostgreSQL work per opsgate request in the timed windows."""
    n = max(out.ops.accepted, 1)
    before, after = out.db_before, out.db_after
    lines = []
    if before.database and after.database:
        per = {k: (after.database[k] - before.database[k]) / n for k in after.database}
        lines.append(
            "  PostgreSQL per opsgate request (pg_stat_database, approximate): "
            + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
        )
    lines += table_scan_lines(before.tables, after.tables, n)
    lines += index_scan_lines(before.indexes, after.indexes, n)
    return lines


def explain(
    run: Run,
    out: Outcome,
    bare: Server,
    floor: Server,
    ops: Server,
    env: dict[str, str],
    secret: str,
) -> None:
    """Print where the time goes: CPU per component, PostgreSQL work, the profiled batch."""
    say()
    say("where the time goes:")
    for line in [*cpu_lines(run, out), *db_lines(out)]:
        say(line)
    if not run.args.profile_requests:
        return
    run.children.stop(ops.child)
    run.children.stop(floor.child)
    run.children.stop(bare.child)
    say(
        " profile of the opsgate API (extra untimed batch, "
        f"{run.args.profile_requests} requests after {run.args.warmup} warm-up):"
    )
    try:
        for line in run_profile(run.args, run, env, secret):
            say(line)
    except (RuntimeError, TimeoutError, OSError) as exc:
        say(f"  (profile failed: {exc})")


def result_json(run: Run, out: Outcome) -> dict[str, Any]:
    """The object of the last output line."""
    args = run.args
    return {
        "metric": "intake_vs_write_floor",
        "floor_ratio": round(out.floor_ratio, 4),
        "floor_ratio_target": FLOOR_RATE,
        "floor_cpu_ratio": round(out.floor_cpu_ratio, 3),
        "floor_cpu_ratio_target": FLOOR_CPU,
        "floor_p99_ratio": round(out.floor_p99_ratio, 3),
        "floor_p99_ratio_target": FLOOR_P99,
        "floor_targets_met": out.floor_met,
        "opsgate_per_s": round(out.ops.rate, 1),
        "opsgate_cpu_ms_per_req": round(server_ms(out.ops, OPS), 3),
        "p50_ms": round(out.ops.percentile_ms(0.5), 2),
        "p99_ms": round(out.ops.percentile_ms(0.99), 2),
        "floor_per_s": round(out.floor.rate, 1),
        "floor_cpu_ms_per_req": round(server_ms(out.floor, FLOOR), 3),
        "floor_p50_ms": round(out.floor.percentile_ms(0.5), 2),
        "floor_p99_ms": round(out.floor.percentile_ms(0.99), 2),
        "ratio": round(out.ratio, 4),
        "target": TARGET,
        "bare_per_s": round(out.bare.rate, 1),
        "bare_cpu_ms_per_req": round(server_ms(out.bare, BARE), 3),
        "bare_p50_ms": round(out.bare.percentile_ms(0.5), 2),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "database": "postgresql",
        "rounds": args.rounds,
        "warmup": args.warmup,
        "valid": out.valid,
        "errors": out.ops.errors + out.bare.errors + out.floor.errors,
        "bare_p99_ms": round(out.bare.percentile_ms(0.99), 2),
        "jobs": out.counts.get("jobs"),
        "outbox_pending": out.counts.get("outbox_pending"),
        "server_stack": out.stacks.get("opsgate api"),
        "other_load": round(max(out.bare.other + out.floor.other + out.ops.other), 3),
        "run_seconds": round(time.monotonic() - run.started, 1),
    }


def measure(run: Run) -> int:
    """Both sides, the checks, the diagnostics; prints the JSON line; returns the exit code."""
    args = run.args
    env, _db_url, secret = prepare(run)
    say(
        f"bench.intake {run.run_id}: {args.requests} timed requests per side x {args.rounds} "
        f"round(s) (+{args.warmup} warm-up each), concurrency {args.concurrency}, "
        f"postgresql {run.dbname}, redis {args.redis_url}, {os.cpu_count()} cores"
    )
    bare, floor, ops, stacks = start_servers(run, env)
    bare_side, floor_side, ops_side, db_before = run_rounds(run, bare, floor, ops, secret)
    run.children.check_alive([bare.child, floor.child, ops.child])
    # Read PostgreSQL's statistics before the checks add their own queries (the publishes
    # finish within milliseconds; the statistics are flushed at most once a second).
    time.sleep(1.1)
    out = Outcome(bare_side, floor_side, ops_side, stacks, db_before, DbStats.read(run))
    check(run, out)
    headline(out)
    if not out.floor_met or args.profile or not out.valid:
        explain(run, out, bare, floor, ops, env, secret)
    run.children.stop_all()
    say()
    print(json.dumps(result_json(run, out)), flush=True)
    return 0 if out.valid else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; always clean up what it started."""
    return procs.guarded(Run(parse_args(argv)), measure, "opsgate-bench-intake")


if __name__ == "__main__":
    sys.exit(main())
