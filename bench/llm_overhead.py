"""Benchmark: what opsgate adds to a model call, against a bare openai SDK call, in one run.

What it measures
  server: the sandbox's OpenAI-compatible model server (tools/sandbox/llm/routes.py) under
    uvicorn in a process of its own (as a model vendor is), answering every request with a
    valid plan after 50 ms (`--server-ms`). In a thread of this process (`--server-thread`,
    as before) its own work after each answer competes for the GIL with the work opsgate
    does after the answer, which the bare side does not do: that inflates the added time by
    whatever the thread happens to run, not by what opsgate costs.
  bare side: `client.chat.completions.create(model, messages, response_format)` with the
    openai SDK against that server: the same messages (the system prompt with the same
    retrieved policy passages, the fenced untrusted block) and the same strict JSON schema
    opsgate sends (built before the clock), and no parsing or checks of the answer.
  opsgate side: `app.llm.planner.plan()`: the router (features, tier choice), retrieval of
    policy passages, PII redaction with placeholders, the prompt, one Redis round trip for
    the fleet-wide breaker, the cache lookup (a miss: every request is distinct) and the
    budget reservation, `chat.completions.create` with the strict schema built once, the
    breaker's count (sent as the answer arrives, read back after validation), the answer
    validated into the Plan model, placeholder restore, the catalog's validation of every
    step, the cache store (sent without waiting), and the call's record (the row
    itself and the budget's settlement are written by the plan stage's own commit, which
    the stage makes anyway; `--with-write` adds that write to the timed section).
  Both sides alternate call by call, so drift on the machine hits both alike; `--warmup`
  untimed calls first, then `--calls` timed ones per side.

How to read the output
  `added_ms_p50` = median(opsgate) - median(bare), in milliseconds (target: at most 1 ms);
  `ratio` = median(bare) / median(opsgate) (1.0 means nothing added). `added_cpu_ms_p50`
  is the same difference in this thread's CPU time per call (the server runs in its own
  process), a figure a busy machine distorts much less than wall time; on a quiet machine
  the two differ by the Redis round trips' waits. Before the JSON line,
  the p50/p90/p99 of both sides and the median of each opsgate part measured on its own in
  the same run (also in the JSON line as `parts_ms`), so a miss can be traced to its cause:
  `router` (features and tier choice), `retrieval` (BM25 over the policy passages, a new
  query each time), `prompt` (system prompt, untrusted block, the redaction before
  sending), `redis_before` (breaker + cache lookup + budget reservation, one round trip),
  `redis_after` (the breaker's count, sent as the answer arrives and read back once it is
  judged, and the cache store, sent without waiting), `validation` (the answer into
  the Plan model, placeholders restored, the catalog's checks), `budget_settle` (the
  reservation's settlement in its own PostgreSQL transaction: the stage does it in its own
  commit, outside this timing).

It creates a fresh PostgreSQL database (dropped at the end) and FLUSHes the Redis database it
is given (start and end).

    .venv/bin/python -m bench.llm_overhead [--calls 400] [--server-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
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


SYSTEM = "model:bench-parts"


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


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and this thread's CPU time of one call, ms."""
    started, cpu = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000


def parts(n: int) -> dict[str, float]:
    """Each opsgate part on its own, median of n runs, ms."""
    from decimal import Decimal

    from app.controls import budget
    from app.core.redaction import Placeholders
    from app.jobs.steps import Plan
    from app.llm import admission, cache, retrieval
    from app.llm.config import models_config
    from app.llm.engine import redacted
    from app.llm.planner import system_prompt, untrusted_block
    from app.llm.router import features, request_text, route
    from app.llm.schema import plan_model, to_plan
    from app.stages.plan import validate_plan

    cfg = models_config()
    content = json.dumps(PLAN)
    names = ("router", "retrieval", "prompt", "redis_before", "redis_after", "validation")
    out: dict[str, list[float]] = {k: [] for k in (*names, "budget_settle")}
    for i in range(n):
        req = request(2_000_000 + i)
        text = request_text(req.untrusted)
        out["router"].append(
            timed(lambda t=text: route("support_refund", features(t, 0, cfg), cfg))
        )
        out["retrieval"].append(timed(lambda t=text: retrieval.retrieve(t)))
        passages = retrieval.retrieve(text)
        ph = Placeholders()

        def prompt(r: Any = req, p: Any = passages, h: Any = ph) -> Any:
            messages = [
                {"role": "system", "content": system_prompt(r, p, h)},
                {"role": "user", "content": untrusted_block(r.untrusted, h, redact=False)},
            ]
            return redacted(messages, h)

        out["prompt"].append(timed(prompt))
        key = cache.key("bench-parts", "m", [{"i": i}])
        asked = budget.ask("bench", None, Decimal("0.01"))
        out["redis_before"].append(
            timed(
                lambda k=key, a=asked: admission.admit(
                    SYSTEM, check_breaker=True, cache_key=k, asked=a
                )
            )
        )
        # As the call does it: the count sent as the answer arrives, then once the answer is
        # judged its answer read and the store sent (here nothing runs in between, so the
        # count's whole round trip shows; in a call, validation runs while it is on its way).
        out["redis_after"].append(
            timed(
                lambda k=key: (
                    admission.count(SYSTEM),
                    admission.settle(SYSTEM, cache_key=k, answer={"c": 1}, ttl_seconds=60),
                )
            )
        )
        held = budget.reserve("bench", None, Decimal("0.01"))
        out["budget_settle"].append(timed(lambda r=held: budget.settle(r, Decimal(0))))

        def validation(h: Any = ph) -> Any:
            parsed = plan_model().model_validate_json(content)
            plan = Plan.model_validate(h.restore(to_plan(parsed).model_dump()))
            validate_plan(plan, "support_refund")

        out["validation"].append(timed(validation))
    return {k: round(statistics.median(v), 3) for k, v in out.items()}


def serve(in_thread: bool) -> tuple[str, Callable[[], None]]:
    """The scripted model server: its base URL and how to stop it."""
    from tools.sandbox.llm.routes import serve_in_thread

    if in_thread:
        return serve_in_thread()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import sys, uvicorn\n"
        "from tools.sandbox.llm.routes import create_model_app\n"
        "uvicorn.run(create_model_app(), host='127.0.0.1', port=int(sys.argv[1]),"
        " log_level='warning', access_log=False, lifespan='off')\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)  # the server is starting; not a timing measurement
    else:
        child.kill()
        raise SystemExit("bench: the model server did not start")

    def stop() -> None:
        child.terminate()
        child.wait(timeout=10)

    return url, stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per side")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per side first")
    parser.add_argument("--server-ms", type=int, default=50, help="the server's answer delay")
    parser.add_argument("--with-write", action="store_true", help="time the record's DB write")
    parser.add_argument(
        "--server-thread",
        action="store_true",
        help="run the model server in a thread of this process (it then competes for the GIL)",
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="opsgate-llm-bench-"))
    dbname = f"opsgate_bench_llm_{secrets.token_hex(4)}"
    db_url = create_database(ADMIN_URL, dbname)
    url, stop = serve(args.server_thread)
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
    from app.llm import planner, retrieval
    from app.llm.planner import system_prompt, untrusted_block
    from app.llm.router import request_text
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
        passages = retrieval.retrieve(request_text(req.untrusted))
        return [
            {"role": "system", "content": system_prompt(req, passages, ph)},
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
    # CPU of this (client) thread per call: what each side costs the caller's process,
    # which a busy machine inflates far less than wall time (the server is another process).
    mine_cpu: list[float] = []
    bare_cpu: list[float] = []
    total = args.warmup + args.calls
    for n in range(total):
        ours_ms, ours_cpu = timed_cpu(lambda i=n: ours(i))
        # The bare side's messages are built before its clock starts.
        prepared = bare_messages(n + 1_000_000)
        theirs_ms, theirs_cpu = timed_cpu(lambda m=prepared: theirs(m))
        if n >= args.warmup:
            mine.append(ours_ms)
            bare_ms.append(theirs_ms)
            mine_cpu.append(ours_cpu)
            bare_cpu.append(theirs_cpu)
        if n and n % 100 == 0:
            print(f"bench: {n}/{total} calls per side", file=sys.stderr)
    breakdown = parts(100)
    for name, values in (("bare", bare_ms), ("opsgate", mine)):
        print(
            f"{name:8s} p50 {pct(values, 0.5):7.2f} ms  p90 {pct(values, 0.9):7.2f} ms  "
            f"p99 {pct(values, 0.99):7.2f} ms"
        )
    print("opsgate parts, median ms: " + ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    print(
        f"client CPU per call, p50: bare {statistics.median(bare_cpu):.3f} ms, "
        f"opsgate {statistics.median(mine_cpu):.3f} ms"
    )
    added = statistics.median(mine) - statistics.median(bare_ms)
    added_cpu = statistics.median(mine_cpu) - statistics.median(bare_cpu)
    result = {
        "calls": args.calls,
        "server_ms": args.server_ms,
        "bare_p50_ms": round(statistics.median(bare_ms), 3),
        "opsgate_p50_ms": round(statistics.median(mine), 3),
        "added_ms_p50": round(added, 3),
        "ratio": round(statistics.median(bare_ms) / statistics.median(mine), 4),
        "bare_cpu_p50_ms": round(statistics.median(bare_cpu), 3),
        "opsgate_cpu_p50_ms": round(statistics.median(mine_cpu), 3),
        "added_cpu_ms_p50": round(added_cpu, 3),
        "target_added_ms": 1.0,
        "met": added <= 1.0,
        "with_write": args.with_write,
        "server": "thread" if args.server_thread else "process",
        "parts_ms": breakdown,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
