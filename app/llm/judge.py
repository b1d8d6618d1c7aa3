"""The soft check's model judge: one structured call asking how well a plan is grounded.

It goes through the planner's call engine (app/llm/engine.py: redaction of every message,
budget reservation, response cache, breaker, the call record that puts tokens and cost in
model_calls and the audit chain); only the question and the answer's schema differ. Its
verdict can only lower the deterministic scorer's confidence (app/stages/soft_check.py): a
prompt-injected ticket that compromises the planner's endpoint may compromise the judge's
too, so the judge is never the reason a write goes ahead. When no model of the tier answers
usably, JudgeUnavailable leaves the decision to the scorer alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.controls.calls import CallRecorder
from app.core.redaction import Placeholders
from app.errors import JudgeUnavailable
from app.llm import prompts, retrieval
from app.llm.config import models_config
from app.llm.engine import (
    BreakerOpen,
    Conversation,
    InvalidAnswer,
    Unavailable,
    send,
    settle,
    untrusted_block,
)


class SoftVerdict(BaseModel):
    """What the judge answers."""

    model_config = ConfigDict(extra="forbid")

    supported: bool
    confidence: float = Field(ge=0, le=1)
    reasons: list[str]


@dataclass(frozen=True)
class Judgement:
    """The judge's confidence and reasons, and which model gave them."""

    confidence: float
    supported: bool
    reasons: list[str]
    model: str
    tier: str


def configured_tier(planner_tier: str, model_configured: bool) -> str | None:
    """The tier that judges a plan made by `planner_tier`, or None (the scorer alone judges).

    `model_configured` says whether OPENAI_API_KEY or OPENAI_BASE_URL is set; a tier with
    an endpoint of its own (base_url in models.yaml) judges without them.
    """
    cfg = models_config()
    setting = cfg.soft_check
    if setting is None:
        return None
    if planner_tier == "rules" and not setting.judge_rules_plans:
        return None
    if not model_configured and cfg.tiers[setting.tier].base_url is None:
        return None
    return setting.tier


def judge(
    workflow: str,
    tier_name: str,
    untrusted: dict[str, Any],
    signals: list[str],
    passages: list[retrieval.Passage],
    rec: CallRecorder,
) -> Judgement:
    """Ask the tier's models in order; the first usable answer is the judgement."""
    cfg = models_config()
    tier = cfg.tiers[tier_name]
    ph = Placeholders()
    prompt = prompts.load("soft_check")
    policy = "\n\n".join(f"[{p.id}] {p.title}\n{p.text}" for p in passages) or "(none found)"
    system = prompt.render(
        workflow=workflow,
        policy=policy,
        signals="\n".join(f"- {s}" for s in signals) or "(none)",
    )
    messages = [
        {"role": "system", "content": system},
        # Redacted by `send` with the same placeholders, just before it leaves.
        {"role": "user", "content": untrusted_block(untrusted, ph, redact=False)},
    ]
    conv = Conversation(
        workflow,
        cfg,
        prompt.version,
        [p.id for p in passages],
        ph,
        messages,
        ["soft check"],
        rec,
        response_model=lambda: SoftVerdict,
    )
    problems: list[str] = []
    for model in tier.models:
        try:
            answer = send(conv, tier_name, tier, model, messages)
        except BreakerOpen:
            problems.append(f"{model.name}: breaker open")
            continue
        except Unavailable:
            problems.append(f"{model.name}: unavailable")
            continue
        except InvalidAnswer as exc:
            problems.append(str(exc))
            continue
        if answer.refusal is not None or not isinstance(answer.parsed, SoftVerdict):
            why = "refused" if answer.refusal is not None else (answer.parse_error or "no answer")
            answer.finish("refused" if answer.refusal else "invalid", {"error": why})
            settle(answer, conv, usable=False)
            problems.append(f"{model.name}: {why}")
            continue
        answer.finish("ok")
        settle(answer, conv, usable=True)
        verdict = answer.parsed
        reasons = [ph.restore(r) if isinstance(r, str) else str(r) for r in verdict.reasons]
        return Judgement(verdict.confidence, verdict.supported, reasons, model.name, tier_name)
    raise JudgeUnavailable("; ".join(problems) or f"tier {tier_name} has no model")


def untrusted_view(
    request: dict[str, Any], history: list[str], plan: dict[str, Any]
) -> dict[str, Any]:
    """What the judge reads, in one JSON-able object (dumped with default=str)."""
    view: dict[str, Any] = json.loads(
        json.dumps({"request": request, "history": history, "plan": plan}, default=str)
    )
    return view
