"""The model planner: route, redact, retrieve, ask, validate (with repairs), record.

Runs inside the plan stage's work step (no transaction open). Every model call, cache hit
and failure is recorded on the stage's CallRecorder, so tokens and cost land in
model_calls and the audit chain whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from app.controls.calls import CallRecorder
from app.core.redaction import Placeholders
from app.errors import EscalationRequired, PermanentError, RetryableError
from app.jobs.steps import Plan
from app.llm import prompts, retrieval
from app.llm.config import ModelPrice, Tier, models_config
from app.llm.engine import (
    Answer,
    Conversation,
    InvalidAnswer,
    Unavailable,
    send,
    settle,
    untrusted_block,
)
from app.llm.router import features, request_text, route
from app.llm.schema import plan_model, to_plan

log = structlog.get_logger(__name__)

__all__ = ["PlanRequest", "plan", "system_prompt", "untrusted_block"]


@dataclass(frozen=True)
class PlanRequest:
    """What the planner is asked to plan: the job's workflow, input and what is known."""

    workflow: str
    allowed_tools: list[str]
    untrusted: dict[str, Any]
    journal: list[str]
    attachments: int = 0


@dataclass
class _Planning:
    """A planning conversation: the engine's conversation and the plan's own validation."""

    conv: Conversation
    request: PlanRequest
    validate: Callable[[Plan, str], None]


def system_prompt(
    req: PlanRequest,
    passages: list[retrieval.Passage],
    ph: Placeholders,
    prompt: prompts.Prompt | None = None,
) -> str:
    """The instructions (`prompt`, else the planner's as it is now), with the workflow's
    tools, policy passages and journal filled in."""
    policy = "\n\n".join(f"[{p.id}] {p.title}\n{p.text}" for p in passages) or "(none found)"
    journal = "\n".join(f"- {line}" for line in req.journal) or "(nothing yet)"
    return (prompt or prompts.load("planner")).render(
        workflow=req.workflow,
        allowed_tools=", ".join(req.allowed_tools) or "(none: escalate)",
        policy=policy,
        journal=ph.redact(journal),
    )


def plan(
    req: PlanRequest, rec: CallRecorder, validate: Callable[[Plan, str], None]
) -> tuple[Plan, str]:
    """A validated plan from the model tiers, and the tier that made it."""
    cfg = models_config()
    ph = Placeholders()
    text = request_text(req.untrusted)
    decision = route(req.workflow, features(text, req.attachments, cfg), cfg)
    passages = retrieval.retrieve(text)
    # Loaded once: the version recorded is the one whose text is sent.
    prompt = prompts.load("planner")
    messages = [
        {"role": "system", "content": system_prompt(req, passages, ph, prompt)},
        # Redacted by `send` with the same placeholders, just before it leaves.
        {"role": "user", "content": untrusted_block(req.untrusted, ph, redact=False)},
    ]
    conv = Conversation(
        req.workflow,
        cfg,
        prompt.version,
        [p.id for p in passages],
        ph,
        messages,
        decision.reasons,
        rec,
        response_model=plan_model,
    )
    call = _Planning(conv, req, validate)
    problems: list[str] = []
    fallback: tuple[Plan, str] | None = None
    for index, tier_name in enumerate(decision.tiers):
        top = index == len(decision.tiers) - 1
        try:
            result = _tier(call, tier_name, cfg.tiers[tier_name])
        except InvalidAnswer as exc:
            problems.append(f"{tier_name}: {exc}")
            conv.reasons.append(f"up from {tier_name}: invalid output")
            continue
        if result is None:
            conv.reasons.append(f"past {tier_name}: no model available")
            continue
        threshold = cfg.router.retry_up_below_confidence
        if result.confidence < threshold and not top:
            conv.reasons.append(
                f"up from {tier_name}: confidence {result.confidence:.2f} < {threshold:.2f}"
            )
            fallback = fallback or (result, tier_name)
            continue
        return result, tier_name
    if fallback is not None:
        return fallback
    if conv.unavailable:
        raise RetryableError(
            "no model available: " + "; ".join(conv.unavailable), retry_after=conv.retry_after
        )
    raise EscalationRequired(
        "schema_invalid",
        "no tier produced a valid plan: " + " | ".join(problems),
        {"tiers": decision.tiers},
    )


def _tier(call: _Planning, tier_name: str, tier: Tier) -> Plan | None:
    """The first model of the tier that answers; None when none could be reached."""
    for model in tier.models:
        try:
            return _ask(call, tier_name, tier, model)
        except Unavailable:  # BreakerOpen too: skipped without a call
            continue
    return None


def _ask(call: _Planning, tier_name: str, tier: Tier, model: ModelPrice) -> Plan:
    """Ask one model, feeding validation errors back up to `repair_attempts` times."""
    conv = call.conv
    messages = list(conv.messages)
    attempts = 1 + conv.cfg.router.repair_attempts
    error = ""
    for attempt in range(1, attempts + 1):
        # The breaker is asked before a model's first call only, in send's one round trip.
        answer = send(conv, tier_name, tier, model, messages, check_breaker=attempt == 1)
        try:
            if answer.refusal is not None:
                raise EscalationRequired(
                    "refused",
                    f"{model.name} refused: {answer.refusal}",
                    {"model": model.name, "tier": tier_name},
                )
            try:
                result = _validated(call, answer)
            except InvalidAnswer as exc:
                error = str(exc)
                answer.finish("invalid", {"error": conv.placeholders.redact(error)})
                if attempt < attempts:
                    # The engine redacts these too: a validation error can quote restored
                    # values.
                    messages += [
                        {"role": "assistant", "content": answer.content or ""},
                        {
                            "role": "user",
                            "content": f"That answer is not valid: {error}\nAnswer again with "
                            "one JSON object that follows the response format exactly.",
                        },
                    ]
                continue
            answer.finish("ok")
            settle(answer, conv, usable=True)
            return result
        finally:
            # The breaker counts the call whatever became of its answer (no-op once settled).
            settle(answer, conv, usable=False)
    raise InvalidAnswer(f"{model.name} after {attempts} attempt(s): {error}")


def _validated(call: _Planning, answer: Answer) -> Plan:
    """The domain plan from an answer, or InvalidAnswer with the errors to feed back."""
    if answer.parsed is None:
        raise InvalidAnswer(answer.parse_error or "no JSON object in the answer")
    result = to_plan(answer.parsed)
    result = Plan.model_validate(call.conv.placeholders.restore(result.model_dump()))
    try:
        call.validate(result, call.request.workflow)
    except (EscalationRequired, PermanentError) as exc:
        raise InvalidAnswer(str(exc)) from exc
    return result
