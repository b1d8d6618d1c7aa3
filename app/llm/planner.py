"""The model planner: route, redact, retrieve, ask, validate (with repairs), record.

Runs inside the plan stage's work step (no transaction open). Every model call, cache hit
and failure is recorded on the stage's CallRecorder, so tokens and cost land in
model_calls and the audit chain whatever the outcome.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import openai
import pydantic
import structlog
from openai.lib._pydantic import to_strict_json_schema

from app import breaker
from app.calls import CallRecorder, RecordedModelCall
from app.errors import CircuitOpen, EscalationRequired, PermanentError, RetryableError
from app.llm import budget, cache, prompts, retrieval
from app.llm.client import UNAVAILABLE, client, retry_after
from app.llm.config import ModelPrice, ModelsConfig, Tier, models_config
from app.llm.router import features, request_text, route
from app.llm.schema import plan_model, to_plan
from app.plan import Plan
from app.redaction import Placeholders

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PlanRequest:
    """What the planner is asked to plan: the job's workflow, input and what is known."""

    workflow: str
    allowed_tools: list[str]
    untrusted: dict[str, Any]
    journal: list[str]
    attachments: int = 0


@dataclass
class _Call:
    """The parts of a request that every model call of one job shares."""

    request: PlanRequest
    cfg: ModelsConfig
    prompt_version: str
    passages: list[str]
    placeholders: Placeholders
    messages: list[dict[str, Any]]
    reasons: list[str]
    validate: Callable[[Plan, str], None]
    rec: CallRecorder
    unavailable: list[str] = field(default_factory=list)
    retry_after: float | None = None
    # What the answer must parse as (the plan for the planner; the judge asks for a verdict).
    response_model: Callable[[], type[pydantic.BaseModel]] = plan_model


class _Invalid(Exception):
    """Raised when a model's answer does not make a valid plan, after its repairs."""


def system_prompt(req: PlanRequest, passages: list[retrieval.Passage], ph: Placeholders) -> str:
    """The instructions, with the workflow's tools, policy passages and journal filled in."""
    policy = "\n\n".join(f"[{p.id}] {p.title}\n{p.text}" for p in passages) or "(none found)"
    journal = "\n".join(f"- {line}" for line in req.journal) or "(nothing yet)"
    return prompts.load("planner").render(
        workflow=req.workflow,
        allowed_tools=", ".join(req.allowed_tools) or "(none: escalate)",
        policy=policy,
        journal=ph.redact(journal),
    )


def untrusted_block(value: dict[str, Any], ph: Placeholders) -> str:
    """The outside party's data, redacted and fenced so it cannot close its own fence."""
    text = ph.redact(json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True, default=str))
    text = text.replace("</untrusted_input", "<\\/untrusted_input")
    return f"<untrusted_input>\n{text}\n</untrusted_input>"


def plan(
    req: PlanRequest, rec: CallRecorder, validate: Callable[[Plan, str], None]
) -> tuple[Plan, str]:
    """A validated plan from the model tiers, and the tier that made it."""
    cfg = models_config()
    ph = Placeholders()
    text = request_text(req.untrusted)
    decision = route(req.workflow, features(text, req.attachments, cfg), cfg)
    passages = retrieval.retrieve(text)
    prompt = prompts.load("planner")
    messages = [
        {"role": "system", "content": system_prompt(req, passages, ph)},
        {"role": "user", "content": untrusted_block(req.untrusted, ph)},
    ]
    call = _Call(
        req,
        cfg,
        prompt.version,
        [p.id for p in passages],
        ph,
        messages,
        decision.reasons,
        validate,
        rec,
    )
    problems: list[str] = []
    fallback: tuple[Plan, str] | None = None
    for index, tier_name in enumerate(decision.tiers):
        top = index == len(decision.tiers) - 1
        try:
            result = _tier(call, tier_name, cfg.tiers[tier_name])
        except _Invalid as exc:
            problems.append(f"{tier_name}: {exc}")
            call.reasons.append(f"up from {tier_name}: invalid output")
            continue
        if result is None:
            call.reasons.append(f"past {tier_name}: no model available")
            continue
        threshold = cfg.router.retry_up_below_confidence
        if result.confidence < threshold and not top:
            call.reasons.append(
                f"up from {tier_name}: confidence {result.confidence:.2f} < {threshold:.2f}"
            )
            fallback = fallback or (result, tier_name)
            continue
        return result, tier_name
    if fallback is not None:
        return fallback
    if call.unavailable:
        raise RetryableError(
            "no model available: " + "; ".join(call.unavailable), retry_after=call.retry_after
        )
    raise EscalationRequired(
        "schema_invalid",
        "no tier produced a valid plan: " + " | ".join(problems),
        {"tiers": decision.tiers},
    )


def _tier(call: _Call, tier_name: str, tier: Tier) -> Plan | None:
    """The first model of the tier that answers; None when none could be reached."""
    for model in tier.models:
        system = f"model:{model.name}"
        try:
            breaker.before_call(system, write=False)
        except CircuitOpen as exc:
            call.unavailable.append(f"{model.name}: breaker open")
            call.retry_after = max(call.retry_after or 0, exc.retry_at - time.time())
            continue
        try:
            return _ask(call, tier_name, tier, model)
        except _Unavailable:
            continue
    return None


class _Unavailable(Exception):
    """Raised when a model cannot be reached now (429, 5xx, timeout)."""


def _estimate_tokens(messages: list[dict[str, Any]], schema_chars: int) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in messages) + schema_chars
    return math.ceil(chars / 4) + 16 * len(messages)


@functools.cache
def _schema_chars(model_cls: type[pydantic.BaseModel]) -> int:
    return len(json.dumps(to_strict_json_schema(model_cls)))


def _ask(call: _Call, tier_name: str, tier: Tier, model: ModelPrice) -> Plan:
    """Ask one model, feeding validation errors back up to `repair_attempts` times."""
    messages = list(call.messages)
    attempts = 1 + call.cfg.router.repair_attempts
    error = ""
    for attempt in range(1, attempts + 1):
        answer = _answer(call, tier_name, tier, model, messages)
        if answer.refusal is not None:
            raise EscalationRequired(
                "refused",
                f"{model.name} refused: {answer.refusal}",
                {"model": model.name, "tier": tier_name},
            )
        try:
            result = _validated(call, answer)
        except _Invalid as exc:
            error = str(exc)
            _finish_record(answer, "invalid", {"error": error})
            if attempt < attempts:
                messages += [
                    {"role": "assistant", "content": answer.content or ""},
                    {
                        "role": "user",
                        "content": f"That answer is not valid: {error}\nAnswer again with one "
                        "JSON object that follows the response format exactly.",
                    },
                ]
            continue
        _finish_record(answer, "ok", {})
        if not answer.record.cache_hit:
            cache.put(answer.cache_key, answer.cached(), call.cfg.cache.ttl_seconds)
        return result
    raise _Invalid(f"{model.name} after {attempts} attempt(s): {error}")


@dataclass
class _Answer:
    """One answer (from the model or the cache) and its record."""

    record: RecordedModelCall
    cache_key: str
    content: str | None
    parsed: pydantic.BaseModel | None
    parse_error: str | None
    refusal: str | None = None

    def cached(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "input_tokens": self.record.input_tokens,
            "output_tokens": self.record.output_tokens,
        }


def _finish_record(answer: _Answer, outcome: str, extra: dict[str, Any]) -> None:
    answer.record.outcome = outcome
    answer.record.response.update(extra)


def _answer(
    call: _Call, tier_name: str, tier: Tier, model: ModelPrice, messages: list[dict[str, Any]]
) -> _Answer:
    """One model call, or the cached answer to the same request; recorded either way."""
    model_cls = call.response_model()
    key = cache.key(call.prompt_version, model.name, messages)
    record = RecordedModelCall(
        tier=tier_name,
        model=model.name,
        prompt_version=call.prompt_version,
        passages=call.passages,
        router=list(call.reasons),
        request={"messages": messages, "max_output_tokens": tier.max_output_tokens},
        response={},
        outcome="pending",
    )
    call.rec.model_calls.append(record)
    hit = cache.get(key)
    if hit is not None:
        record.cache_hit = True
        record.input_tokens, record.output_tokens = hit["input_tokens"], hit["output_tokens"]
        record.response = {"content": hit["content"]}
        try:
            parsed = model_cls.model_validate_json(hit["content"] or "")
        except pydantic.ValidationError as exc:
            return _Answer(record, key, hit["content"], None, _errors(exc))
        return _Answer(record, key, hit["content"], parsed, None)
    scope = call.request.workflow
    worst = model.cost(_estimate_tokens(messages, _schema_chars(model_cls)), tier.max_output_tokens)
    held = budget.reserve(scope, call.cfg.budgets.daily(scope), worst)
    started = time.perf_counter()
    system = f"model:{model.name}"
    try:
        raw = client(tier.timeout_seconds).chat.completions.with_raw_response.parse(
            model=model.name,
            messages=messages,  # type: ignore[arg-type]
            response_format=model_cls,
            max_completion_tokens=tier.max_output_tokens,
            temperature=0,
        )
    except UNAVAILABLE as exc:
        record.settle = (held, Decimal(0))
        breaker.record(system, ok=False)
        record.latency_ms = (time.perf_counter() - started) * 1000
        record.outcome, record.response = "unavailable", {"error": _describe(exc)}
        call.unavailable.append(f"{model.name}: {_describe(exc)}")
        wait = retry_after(exc)
        if wait is not None:
            call.retry_after = max(call.retry_after or 0, wait)
        raise _Unavailable from exc
    except openai.APIStatusError as exc:
        # 4xx: this model will not take this request (bad key, unknown model, schema).
        record.settle = (held, Decimal(0))
        breaker.record(system, ok=True)
        record.latency_ms = (time.perf_counter() - started) * 1000
        record.outcome, record.response = "error", {"error": _describe(exc)}
        raise _Invalid(f"{model.name}: {_describe(exc)}") from exc
    record.latency_ms = (time.perf_counter() - started) * 1000
    breaker.record(system, ok=True)
    body = _json_body(raw.http_response)
    usage = body.get("usage") or {}
    record.input_tokens = int(usage.get("prompt_tokens") or 0)
    record.output_tokens = int(usage.get("completion_tokens") or 0)
    record.cost_usd = model.cost(record.input_tokens, record.output_tokens)
    # The unused part of the reservation goes back in the stage's own commit, with the
    # call's record: no second transaction on the hot path.
    record.settle = (held, record.cost_usd)
    message = ((body.get("choices") or [{}])[0] or {}).get("message") or {}
    content, refusal = message.get("content"), message.get("refusal")
    record.response = {"content": content, "refusal": refusal}
    if refusal:
        record.outcome = "refused"
        return _Answer(record, key, content, None, None, refusal=call.placeholders.redact(refusal))
    try:
        answer_model: pydantic.BaseModel | None = raw.parse().choices[0].message.parsed
    except pydantic.ValidationError as exc:
        return _Answer(record, key, content, None, _errors(exc))
    except (openai.OpenAIError, ValueError) as exc:
        return _Answer(record, key, content, None, _describe(exc))
    return _Answer(record, key, content, answer_model, None)


def _validated(call: _Call, answer: _Answer) -> Plan:
    """The domain plan from an answer, or _Invalid with the errors to feed back."""
    if answer.parsed is None:
        raise _Invalid(answer.parse_error or "no JSON object in the answer")
    result = to_plan(answer.parsed)
    result = Plan.model_validate(call.placeholders.restore(result.model_dump()))
    try:
        call.validate(result, call.request.workflow)
    except (EscalationRequired, PermanentError) as exc:
        raise _Invalid(str(exc)) from exc
    return result


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _errors(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()[:8]
    )


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"{exc.__class__.__name__}{f' {status}' if status else ''}: {str(exc)[:300]}"
