"""Benchmark: how long the fleet takes to obey the kill switch, in one run.

What it measures
  A fleet as deployed (two `opsgate worker` processes with beat, PostgreSQL, Redis, the
  sandbox with every Stripe call held `--latency-ms`) works through `--jobs` refund jobs.
  Once `--engage-after` of them completed, the global switch is engaged (the same call the
  CLI and the API make) and the clock starts. Then:
  - `obey_ms`: from the engage until the last downstream write that got through arrived
    at the sandbox (by the sandbox's ledger; the same machine's clock). Calls already past
    their check when the switch went on may still land; nothing that checks after it does.
  - `parked_ms`: until no step is in flight and every unfinished job is parked `paused`.
  - `late_writes`: writes that arrived after the engage, and `in_flight_at_engage`: the
    steps claimed at that moment (late_writes never exceeds it: the order the test suite
    asserts; here it is reported).
  Then the switch is released and the run waits until every job completed, counting each
  refund (none may be applied twice).

How to read the output
  Target: `obey_ms` under 1000. The last line is one JSON object; `valid` is false (exit 1)
  if a job was lost or a refund applied twice.

It creates a fresh PostgreSQL database (dropped at the end) and FLUSHes the Redis database
it is given (start and end), starts and always stops its children.

    .venv/bin/python -m bench.killswitch [--jobs 200] [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import pipeline  # noqa: E402
from bench.procs import wait_until  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=200, help="refund jobs in the run")
    p.add_argument("--engage-after", type=int, default=20, help="completions before engaging")
    p.add_argument("--latency-ms", type=int, default=200, help="Stripe latency at the sandbox")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    mine, rest = p.parse_known_args(argv)
    base = pipeline.parse_args(
        [
            "--jobs",
            str(mine.jobs),
            "--warmup",
            "0",
            "--workers",
            "2",
            "--redis-url",
            mine.redis_url,
            *rest,
        ]
    )
    for key, value in vars(mine).items():
        setattr(base, key, value)
    base.profile_jobs = 0
    return base


def statuses(job_ids: list[str]) -> collections.Counter[str]:
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import Job

    with session_scope() as s:
        return collections.Counter(s.scalars(select(Job.status).where(Job.id.in_(job_ids))).all())


def claimed(job_ids: list[str]) -> int:
    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.models import PlanStep

    with session_scope() as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    PlanStep.job_id.in_(job_ids), PlanStep.status == "claimed"
                )
            )
            or 0
        )


def ledger(url: str) -> list[dict[str, Any]]:
    import httpx

    return list(httpx.get(f"{url}/_sandbox/ledger", timeout=30).json()["writes"])


def measure(run: pipeline.Run) -> int:
    import httpx

    from app.controls import killswitch
    from app.core.db import session_scope
    from app.jobs import lifecycle

    args = run.args
    env, sandbox_url, cases = pipeline.prepare(run)
    pipeline.start_sandbox(
        run.children, env, run.tmp, int(sandbox_url.rsplit(":", 1)[1]), run.tmp / "sandbox.db"
    )
    httpx.post(
        f"{sandbox_url}/_sandbox/faults",
        json={"system": "stripe", "latency_ms": args.latency_ms},
        timeout=10,
    ).raise_for_status()
    env = {**env, "OPSGATE_REAPER_INTERVAL": "1", "OPSGATE_STALE_AFTER": "30"}
    from app.celery_app import celery_app

    workers = pipeline.start_workers(run.children, "opsgate", args, env, run.tmp, "ks", celery_app)
    # beat runs in the first worker's process group: start one more with -B
    run.children.spawn(
        "beat",
        [sys.executable, "-m", "app", "beat"],
        env,
        run.tmp / "beat.log",
    )
    job_ids = pipeline.submit_all(run.run_id, "k", cases["timed"])
    wait_until(
        lambda: statuses(job_ids)[lifecycle.COMPLETED] >= args.engage_after,
        300,
        "jobs to complete before the engage",
        alive=lambda: run.children.check_alive(workers),
    )
    with session_scope() as s:
        killswitch.engage(s, "global", "bench", "kill-switch drill")
        s.commit()
    engaged = time.time()
    in_flight = claimed(job_ids)

    def parked() -> bool:
        c = statuses(job_ids)
        return claimed(job_ids) == 0 and c[lifecycle.PAUSED] + c[lifecycle.COMPLETED] == len(
            job_ids
        )

    wait_until(parked, 120, "the fleet to park", interval=0.05)
    parked_at = time.time()
    writes = ledger(sandbox_url)
    arrivals = [datetime.fromisoformat(w["at"].replace("Z", "+00:00")).timestamp() for w in writes]
    late = [t for t in arrivals if t > engaged]
    obey_ms = max(0.0, (max(late) - engaged) * 1000) if late else 0.0
    paused = statuses(job_ids)[lifecycle.PAUSED]
    with session_scope() as s:
        killswitch.release(s, "global", "bench", "drill over")
        resumed = killswitch.resume_released(s, "bench")
        s.commit()
    from app.jobs import outbox

    for job_id in resumed:
        outbox.publish_for_job(job_id)
    wait_until(
        lambda: statuses(job_ids)[lifecycle.COMPLETED] == len(job_ids),
        600,
        "every job to complete after the release",
        alive=lambda: run.children.check_alive(workers),
    )
    refunds = collections.Counter(
        w["body"]["charge"]
        for w in ledger(sandbox_url)
        if w["system"] == "stripe" and w["outcome"] == "applied"
    )
    valid = len(refunds) == len(job_ids) and max(refunds.values()) == 1
    print(
        f"engaged after {args.engage_after} completions with {in_flight} step(s) in flight; "
        f"{len(late)} write(s) landed after the engage; {paused} job(s) parked; "
        f"all {len(job_ids)} completed after the release",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "jobs": len(job_ids),
                "in_flight_at_engage": in_flight,
                "late_writes": len(late),
                "obey_ms": round(obey_ms, 1),
                "parked_ms": round((parked_at - engaged) * 1000, 1),
                "parked_jobs": paused,
                "target_obey_ms": 1000,
                "met": obey_ms < 1000,
                "valid": valid,
            }
        )
    )
    return 0 if valid else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    run = pipeline.Run(args)
    run.tmp = Path(tempfile.mkdtemp(prefix="opsgate-killswitch-bench-"))
    try:
        return measure(run)
    finally:
        run.cleanup()


if __name__ == "__main__":
    sys.exit(main())
