"""The model tier in bench/saturation.py's production profile: the planner (and the soft
check's judge) really call the scripted OpenAI-compatible server (the sandbox's LLM routes,
tools/sandbox/llm/routes.py), which answers each call after a fixed delay.

The refund cases are ones the rules tier would plan, so the run's copy of config/ puts
support_refund in the router's `skip_rules` (as evals/world.py does for model-planned sets):
every job is planned by the `small` tier. The server answers what it is scripted to, so each
case gets its own plan (the refund and the internal note the rules tier would have made, in
the model-facing shape), matched by the planner prompt's first words and the case's ticket id;
the judge gets one agreeing verdict for every prompt. Budgets are raised so a long run is
never stopped by the day's spend cap (the bench measures throughput, not cost control).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from bench.report import _query

# The first words of each system prompt (config/prompts/), as evals/cases.py matches them.
PLANNER_PROMPT = "You are the planning step of opsgate"
JUDGE_PROMPT = "You are the opsgate soft check"
API_KEY = "sk-opsgate-bench"  # the scripted server ignores it; the SDK insists on one
AGREEING_JUDGE: dict[str, Any] = {
    "supported": True,
    "confidence": 0.9,
    "reasons": ["The plan refunds the charge the requester names, as asked."],
}


def config_dir(source: Path, target: Path) -> Path:
    """A copy of `source` (config/) whose router plans support_refund with the model tiers."""
    shutil.copytree(source, target)
    path = target / "models.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("router", {})["skip_rules"] = ["support_refund"]
    data.setdefault("budgets", {})["daily_usd"] = {"default": 100000.0}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return target


def model_env(sandbox: str, config: Path) -> dict[str, str]:
    """The variables that turn the model tiers on against the sandbox's scripted server."""
    return {
        "OPENAI_BASE_URL": f"{sandbox}/v1",
        "OPENAI_API_KEY": API_KEY,
        "OPSGATE_CONFIG_DIR": str(config),
    }


def plan_answer(case: dict[str, Any]) -> dict[str, Any]:
    """The plan a competent model gives for one bulk refund case (tools/sandbox/bulk.py)."""
    ticket, charge = int(case["ticket_id"]), str(case["charge_id"])
    amount, currency = int(case["amount"]), str(case["currency"])
    shown = f"{amount / 100:.2f} {currency.upper()}"
    return {
        "workflow": "support_refund",
        "summary": f"Refund {shown} on charge {charge} as asked in ticket {ticket}",
        "confidence": 0.9,
        "steps": [
            {
                "tool": "stripe.refund",
                "args": {
                    "charge_id": charge,
                    "amount": amount,
                    "currency": currency,
                    "reason": "requested_by_customer",
                },
                "rationale": f"The requester asks for a refund of {shown} on {charge}.",
                "evidence": [f"ticket:{ticket}", f"charge:{charge}", "policy:refunds#autonomy"],
            },
            {
                "tool": "zendesk.add_comment",
                "args": {
                    "ticket_id": ticket,
                    "body": f"opsgate refunded {shown} on charge {charge}.",
                    "public": False,
                },
                "rationale": "Leave an internal note on the ticket saying what was done.",
                "evidence": [f"ticket:{ticket}"],
            },
        ],
        "escalate": None,
    }


def script(sandbox: str, cases: list[dict[str, Any]], delay_ms: float) -> None:
    """Queue a plan per case and one agreeing judge verdict, each answered after delay_ms.

    `times: -1` keeps an entry for a repair or a retry (it answers the same again); the
    ticket id (6 digits, none a part of another) tells the cases' prompts apart."""
    import httpx

    delay = round(delay_ms)
    entries: list[dict[str, Any]] = [
        {
            "content": plan_answer(c),
            "match": [PLANNER_PROMPT, str(c["ticket_id"])],
            "times": -1,
            "delay_ms": delay,
        }
        for c in cases
    ]
    entries.append(
        {"content": AGREEING_JUDGE, "match": [JUDGE_PROMPT], "times": -1, "delay_ms": delay}
    )
    resp = httpx.post(f"{sandbox}/_models/script", json={"responses": entries}, timeout=120)
    resp.raise_for_status()


def requests_seen(sandbox: str) -> int:
    """Chat completion requests the scripted server received so far."""
    import httpx

    resp = httpx.get(f"{sandbox}/_models/requests", timeout=60)
    resp.raise_for_status()
    return len(resp.json()["requests"])


def call_rows(job_ids: list[str]) -> list[tuple[str, int, int, float]]:
    """model_calls of these jobs per stage: (stage, calls, cache hits, avg latency ms)."""
    rows = _query(
        "SELECT stage, COUNT(*), SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END), AVG(latency_ms)"
        " FROM model_calls WHERE job_id IN :ids GROUP BY stage ORDER BY stage",
        ids=job_ids,
    )
    return [(str(s), int(n), int(h or 0), float(a or 0.0)) for s, n, h, a in rows]


def with_model_hops(
    shape: list[tuple[str, float]], per_stage: dict[str, float]
) -> list[tuple[str, float]]:
    """A hop shape (stage, seconds) with each stage's model wait added to its first hop (a
    stage with model calls and no downstream call gets a hop of its own, in stage order)."""
    out = [list(h) for h in shape]
    for stage, seconds in per_stage.items():
        hop = next((h for h in out if h[0] == stage), None)
        if hop is None:
            order = ("plan", "verify_proposal", "execute", "verify_outcome")
            rank = order.index(stage) if stage in order else 0
            at = next(
                (i for i, h in enumerate(out) if h[0] in order and order.index(h[0]) > rank),
                len(out),
            )
            out.insert(at, [stage, seconds])
        else:
            hop[1] += seconds
    return [(str(s), float(t)) for s, t in out]
