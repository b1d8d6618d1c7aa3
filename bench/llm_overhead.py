"""Benchmark: what opsgate adds to a model call, against a bare openai SDK call, in one run.

What it measures
  server: the sandbox's OpenAI-compatible model server (tools/sandbox/model_routes) in a
    thread of this process, answering every request with a valid plan after 50 ms
    (`--server-ms`).
  bare side: `client.chat.completions.create(model, messages, response_format)` with the
    openai SDK against that server: the same messages and the same strict JSON schema
    opsgate sends (built once, before the clock), and no parsing or checks of the answer.
  opsgate side: `app.llm.planner.plan()`: the router (features, tier choice), retrieval of
    policy passages, PII redaction with placeholders, the prompt, the budget reservation and
    its settlement (two short PostgreSQL transactions), a cache lookup and store in Redis (a
    miss: every request is distinct), the SDK's `chat.completions.parse` into the strict
    Plan model, placeholder restore, the catalog's validation of every step, and the call's
    record (the row itself is written by the plan stage's own commit, which the stage makes
    anyway; `--with-write` adds that write to the timed section).
  Both sides alternate call by call, so drift on the machine hits both alike; `--warmup`
  untimed calls first, then `--calls` timed ones per side.

How to read the output
  `added_ms_p50` = median(opsgate) - median(bare), in milliseconds (target: at most 1 ms);
  `ratio` = median(bare) / median(opsgate) (1.0 means nothing added). Before the JSON line,
  the p50/p90/p99 of both sides and the median of each opsgate part measured on its own
  (budget, cache, redaction + prompt, retrieval), so a miss can be traced to its cause.

It creates a fresh PostgreSQL database (dropped at the end) and FLUSHes the Redis database it
is given (start and end).

    .venv/bin/python -m bench.llm_overhead [--calls 400] [--server-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pipeline import create_database, drop_database  # noqa: E402

ADMIN_URL = os.environ.get("OPSGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("OPSGATE_BENCH_REDIS", "redis://127.0.0.1:6379/13")
PLAN = {
    "workflow": "support_refund",
    "summary": "Refund the cancelled seat",
    "confidence": 0.91,
    "steps": [
        {
            "tool": "stripe.refund",
            "args": {
                "charge_id": "ch_1003",
                "amount": 3000,
                "currency": "usd",
                "reason": "requested_by_customer",
            },
            "rationale": "The customer cancelled one seat within the hour.",
            "evidence": ["ticket:4830", "policy:refunds#eligibility"],
        },
        {
            "tool": "zendesk.add_comment",
            "args": {"ticket_id": 4830, "body": "Refunded 30.00 USD to [email_1].", "public": None},
            "rationale": "Internal note.",
            "evidence": ["ticket:4830"],
        },
    ],
    "escalate": None,
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def request(n: int) -> Any:
    from app.llm.planner import PlanRequest

    return PlanRequest(
        workflow="support_refund",
        allowed_tools=["zendesk.get_ticket", "zendesk.add_comment", "stripe.refund"],
        untrusted={
            "input": {"ticket_id": 4830},
            "ticket": {
                "id": 4830,
                "subject": f"Money back #{n}",
                "description": "I cancelled one of my two seats within the hour but was still "
                "charged for both (ch_1003). I want my money back for the cancelled seat. "
                f"Reach me at carol{n}@example.com or +1 (415) 555-0{n % 1000:03d}.",
            },
        },
        journal=["new -> queued: accepted"],
    )


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def parts(n: int) -> dict[str, float]:
    """Each opsgate part on its own, median of n runs, ms."""
    from decimal import Decimal

    from app.controls import budget
    from app.core.redaction import Placeholders
    from app.llm import cache, retrieval
    from app.llm.planner import system_prompt, untrusted_block

    req = request(0)
    out: dict[str, list[float]] = {"budget": [], "cache": [], "prompt": [], "retrieval": []}
    for i in range(n):
        out["budget"].append(
            timed(lambda: budget.settle(budget.reserve("bench", None, Decimal("0.01")), Decimal(0)))
        )
        key = cache.key("v", "m", [{"i": i}])
        out["cache"].append(timed(lambda k=key: (cache.get(k), cache.put(k, {"c": 1}, 60))))
        out["retrieval"].append(timed(lambda: retrieval.retrieve(str(req.untrusted))))
        ph = Placeholders()
        out["prompt"].append(
            timed(lambda p=ph: (system_prompt(req, [], p), untrusted_block(req.untrusted, p)))
        )
    return {k: round(statistics.median(v), 3) for k, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per side")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per side first")
    parser.add_argument("--server-ms", type=int, default=50, help="the server's answer delay")
    parser.add_argument("--with-write", action="store_true", help="time the record's DB write")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="opsgate-llm-bench-"))
    dbname = f"opsgate_bench_llm_{secrets.token_hex(4)}"
    db_url = create_database(ADMIN_URL, dbname)
    from tools.sandbox.llm.routes import serve_in_thread

    url, stop = serve_in_thread()
    os.environ.update(
        OPSGATE_HOME=str(home),
        OPSGATE_DATABASE_URL=db_url,
        OPSGATE_REDIS_URL=REDIS_URL,
        OPENAI_BASE_URL=url,
        OPENAI_API_KEY="sk-bench",
    )
    try:
        return run(args, url)
    finally:
        stop()
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        from app.core.db import dispose_engine

        dispose_engine()
        drop_database(ADMIN_URL, dbname)


def run(args: argparse.Namespace, url: str) -> int:
    import openai
    import redis
    from openai.lib._parsing._completions import type_to_response_format_param

    from app.controls.calls import CallRecorder
    from app.core import db
    from app.core.db import session_scope
    from app.core.redaction import Placeholders
    from app.llm import planner
    from app.llm.planner import system_prompt, untrusted_block
    from app.llm.schema import plan_model
    from app.models import Job
    from app.stages.plan import validate_plan

    redis.Redis.from_url(REDIS_URL).flushdb()
    db.upgrade()
    root = url.removesuffix("/v1")
    answer = {
        "content": PLAN,
        "delay_ms": args.server_ms,
        "usage": {"prompt_tokens": 1800, "completion_tokens": 220},
    }
    httpx.put(f"{root}/_models/default", json=answer).raise_for_status()
    bare = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0, timeout=20)
    response_format = type_to_response_format_param(plan_model())
    job_id = "00000000-0000-0000-0000-00000000beef"
    if args.with_write:
        with session_scope() as s:
            s.add(
                Job(
                    id=job_id,
                    source="bench",
                    external_id="1",
                    workflow="support_refund",
                    requester="bench",
                    input={},
                    status="queued",
                    submitted_by="bench",
                )
            )
            s.commit()

    def ours(n: int) -> None:
        rec = CallRecorder(stage="plan")
        planner.plan(request(n), rec, validate_plan)
        if args.with_write:
            with session_scope() as s:
                rec.write(s, job_id)
                s.commit()

    def bare_messages(n: int) -> list[dict[str, str]]:
        ph = Placeholders()
        req = request(n)
        return [
            {"role": "system", "content": system_prompt(req, [], ph)},
            {"role": "user", "content": untrusted_block(req.untrusted, ph)},
        ]

    def theirs(messages: list[dict[str, str]]) -> None:
        bare.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,  # type: ignore[arg-type]
            response_format=response_format,  # type: ignore[arg-type]
        )

    mine: list[float] = []
    bare_ms: list[float] = []
    total = args.warmup + args.calls
    for n in range(total):
        ours_ms = timed(lambda i=n: ours(i))
        # The bare side's messages are built before its clock starts.
        prepared = bare_messages(n + 1_000_000)
        theirs_ms = timed(lambda m=prepared: theirs(m))
        if n >= args.warmup:
            mine.append(ours_ms)
            bare_ms.append(theirs_ms)
        if n and n % 100 == 0:
            print(f"bench: {n}/{total} calls per side", file=sys.stderr)
    breakdown = parts(100)
    for name, values in (("bare", bare_ms), ("opsgate", mine)):
        print(
            f"{name:8s} p50 {pct(values, 0.5):7.2f} ms  p90 {pct(values, 0.9):7.2f} ms  "
            f"p99 {pct(values, 0.99):7.2f} ms"
        )
    print("opsgate parts, median ms: " + ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    added = statistics.median(mine) - statistics.median(bare_ms)
    result = {
        "calls": args.calls,
        "server_ms": args.server_ms,
        "bare_p50_ms": round(statistics.median(bare_ms), 3),
        "opsgate_p50_ms": round(statistics.median(mine), 3),
        "added_ms_p50": round(added, 3),
        "ratio": round(statistics.median(bare_ms) / statistics.median(mine), 4),
        "target_added_ms": 1.0,
        "met": added <= 1.0,
        "with_write": args.with_write,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
