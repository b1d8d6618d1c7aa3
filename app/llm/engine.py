"""The one call engine: every request opsgate sends to a model vendor goes through `send`.

The planner and the soft check's judge differ only in their question and their answer's
schema; both build a `Conversation` and call `send` for each model turn. `send` is the one
place that
- redacts personal data from every message of the conversation (system prompt, the
  untrusted block, the model's own earlier answers and the repair prompts that quote
  validation errors) with the job's placeholder map, just before the request leaves;
- asks the fleet-wide breaker (on a conversation's first call to a model), answers from the
  response cache when the same (redacted) request was answered before, or reserves budget:
  all three in one Redis round trip (app/llm/admission.py);
- calls the tier's endpoint with strict structured outputs (the JSON schema built once per
  answer model), validates the answer with pydantic itself, and settles the reservation to
  the real cost;
- feeds the fleet-wide breaker (an answered call's count goes out as the answer arrives and
  is read back once it is judged, the cache's store without waiting: admission.py) and
  records the call (tokens, cost, outcome) on the stage's CallRecorder, whatever the outcome.

Why `chat.completions.create` and not the SDK's `parse`: `parse` rebuilds the strict schema
from the pydantic model on every call (`to_strict_json_schema`, 1-2 ms for the Plan) and
builds typed response objects that are then thrown away. Here the request carries the very
`response_format` `parse` would send (`type_to_response_format_param`, once per model class),
and the answer is validated as `parse` does it (`model_validate_json` of the message's
content, a refusal in `message.refusal`, a cut-off answer reported as an error).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import pydantic

from app.controls import breaker, budget
from app.controls.calls import CallRecorder, RecordedModelCall
from app.core.lru import LRU
from app.core.redaction import Placeholders
from app.errors import CircuitOpen, one_line
from app.llm import admission, cache
from app.llm.client import client, retry_after, unavailable_errors
from app.llm.config import ModelPrice, ModelsConfig, Tier

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema


class Unavailable(Exception):
    """Raised when a model cannot be reached now (429, 5xx, timeout, connection)."""


class BreakerOpen(Unavailable):
    """Raised when a model's fleet-wide breaker refuses a call now (no call was made)."""


class InvalidAnswer(Exception):
    """Raised when a model's answer cannot be used (after its repairs), or the API refused
    the request itself (a 4xx: bad key, unknown model)."""


@dataclass
class Conversation:
    """What every model call about one job's question shares: the config, the prompt's
    version, the passages cited, the placeholder map, the opening messages, the router's
    reasons, where calls are recorded, and what the answer must parse as."""

    workflow: str
    cfg: ModelsConfig
    prompt_version: str
    passages: list[str]
    placeholders: Placeholders
    messages: list[dict[str, Any]]
    reasons: list[str]
    rec: CallRecorder
    response_model: Callable[[], type[pydantic.BaseModel]]
    unavailable: list[str] = field(default_factory=list)
    retry_after: float | None = None


@dataclass
class Answer:
    """One answer (from the model or the cache) and its record."""

    record: RecordedModelCall
    cache_key: str
    content: str | None
    parsed: pydantic.BaseModel | None
    parse_error: str | None
    refusal: str | None = None
    # The model whose breaker count of this (answered) call was sent and not yet read back:
    # `settle` reads it, and sends the cache's store, once the answer is judged.
    uncounted: str | None = None

    def cached(self) -> dict[str, Any]:
        """What the response cache keeps of a usable answer."""
        return {
            "content": self.content,
            "input_tokens": self.record.input_tokens,
            "output_tokens": self.record.output_tokens,
        }

    def finish(self, outcome: str, extra: dict[str, Any] | None = None) -> None:
        """Settle the record's outcome (ok, invalid, refused) with any detail."""
        self.record.outcome = outcome
        self.record.response.update(extra or {})


def untrusted_block(value: dict[str, Any], ph: Placeholders, *, redact: bool = True) -> str:
    """The outside party's data, redacted and fenced so it cannot close its own fence.

    `redact=False` leaves the redaction to `send`, which redacts every message it sends
    with the conversation's placeholders (the planner and the judge: redacting here as well
    scanned the block twice, the most expensive part of building a prompt). The fence's
    escape is unaffected: redaction only replaces values (with `[kind_n]`), and no value
    it finds takes in the `<\\/` of an escaped fence."""
    text = json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True, default=str)
    if redact:
        text = ph.redact(text)
    text = text.replace("</untrusted_input", "<\\/untrusted_input")
    return f"<untrusted_input>\n{text}\n</untrusted_input>"


# Message texts redaction left unchanged: redaction depends on the text alone, so such a
# text needs no second pass. The planner's system prompt (instructions, tools, policy
# passages, the journal) is the same for many jobs and is most of the redaction's work.
_PII_FREE: LRU[str, bool] = LRU(256)


def _redact(text: str, ph: Placeholders) -> str:
    if _PII_FREE.get(text):
        return text
    out = ph.redact(text)
    if out == text:
        _PII_FREE.put(text, True)
    return out


def redacted(messages: list[dict[str, Any]], ph: Placeholders) -> list[dict[str, Any]]:
    """Every message with its text (string content or text parts) redacted."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            message = {**message, "content": _redact(content, ph)}
        elif isinstance(content, list):
            parts = [
                {**p, "text": _redact(p["text"], ph)}
                if isinstance(p, dict) and isinstance(p.get("text"), str)
                else p
                for p in content
            ]
            message = {**message, "content": parts}
        out.append(message)
    return out


# What the SDK's `parse` raises when an answer stopped early, as a repair prompt's error.
_STOPPED = {
    "length": "LengthFinishReasonError: Could not parse response content as the length limit "
    "was reached",
    "content_filter": "ContentFilterFinishReasonError: Could not parse response content as "
    "the request was rejected by the content filter",
}


def send(
    conv: Conversation,
    tier_name: str,
    tier: Tier,
    model: ModelPrice,
    messages: list[dict[str, Any]],
    *,
    check_breaker: bool = True,
) -> Answer:
    """One model call, or the cached answer to the same request; recorded either way.

    BreakerOpen (noted on the conversation, nothing recorded) when `check_breaker` and the
    model's breaker refuses; a conversation's repairs pass False, so that they are not
    refused half way by the breaker that let their first call through."""
    messages = redacted(messages, conv.placeholders)
    model_cls = conv.response_model()
    fmt = response_format(model_cls)
    # A tier with its own endpoint may serve a model of the same name differently.
    endpoint = f"{tier.base_url}|{model.name}" if tier.base_url else model.name
    key = cache.key(conv.prompt_version, endpoint, messages)
    system = f"model:{model.name}"
    scope = conv.workflow
    worst = model.cost(_estimate_tokens(messages, _schema_chars(model_cls)), tier.max_output_tokens)
    asked = budget.ask(scope, conv.cfg.budgets.daily(scope), worst)
    record = RecordedModelCall(
        tier=tier_name,
        model=model.name,
        prompt_version=conv.prompt_version,
        passages=conv.passages,
        router=list(conv.reasons),
        request={"messages": messages, "max_output_tokens": tier.max_output_tokens},
        response={},
        outcome="pending",
    )
    try:
        admitted = admission.admit(system, check_breaker=check_breaker, cache_key=key, asked=asked)
    except CircuitOpen as exc:
        conv.unavailable.append(f"{model.name}: breaker open")
        conv.retry_after = max(conv.retry_after or 0, exc.retry_at - time.time())
        raise BreakerOpen(model.name) from exc
    except BaseException:
        # A refused budget or an unreachable counter leaves the call's record (pending).
        conv.rec.model_calls.append(record)
        raise
    conv.rec.model_calls.append(record)
    hit = admitted.hit
    if hit is not None:
        record.cache_hit = True
        record.input_tokens, record.output_tokens = hit["input_tokens"], hit["output_tokens"]
        record.response = {"content": hit["content"]}
        try:
            parsed = model_cls.model_validate_json(hit["content"] or "")
        except pydantic.ValidationError as exc:
            return Answer(record, key, hit["content"], None, errors(exc))
        return Answer(record, key, hit["content"], parsed, None)
    held = admitted.reservation
    # The SDK is imported by the first call that needs it (a worker whose tiers never call
    # a model does not carry it); after that, this import is a dictionary lookup.
    import openai

    started = time.perf_counter()
    try:
        sdk = client(tier.timeout_seconds, tier.base_url, tier.api_key_env)
        raw = sdk.chat.completions.with_raw_response.create(
            model=model.name,
            messages=cast("list[ChatCompletionMessageParam]", messages),
            response_format=fmt,
            max_completion_tokens=tier.max_output_tokens,
            temperature=0,
        )
    except unavailable_errors() as exc:
        record.settle = (held, Decimal(0))
        breaker.record(system, ok=False)
        record.latency_ms = (time.perf_counter() - started) * 1000
        record.outcome, record.response = "unavailable", {"error": describe(exc)}
        conv.unavailable.append(f"{model.name}: {describe(exc)}")
        wait = retry_after(exc)
        if wait is not None:
            conv.retry_after = max(conv.retry_after or 0, wait)
        raise Unavailable from exc
    except openai.APIStatusError as exc:
        # 4xx: this model will not take this request (bad key, unknown model, schema).
        record.settle = (held, Decimal(0))
        breaker.record(system, ok=True)
        record.latency_ms = (time.perf_counter() - started) * 1000
        record.outcome, record.response = "error", {"error": describe(exc)}
        raise InvalidAnswer(f"{model.name}: {describe(exc)}") from exc
    record.latency_ms = (time.perf_counter() - started) * 1000
    # Counted now, read back in `settle`: the round trip runs while the answer is judged.
    admission.count(system)
    body = _json_body(raw.http_response)
    usage = body.get("usage") or {}
    record.input_tokens = int(usage.get("prompt_tokens") or 0)
    record.output_tokens = int(usage.get("completion_tokens") or 0)
    record.cost_usd = model.cost(record.input_tokens, record.output_tokens)
    # The unused part of the reservation goes back in the stage's own commit, with the
    # call's record: no second transaction on the hot path.
    record.settle = (held, record.cost_usd)
    answer = _answer(conv, model_cls, record, key, body)
    answer.uncounted = system
    return answer


def _answer(
    conv: Conversation,
    model_cls: type[pydantic.BaseModel],
    record: RecordedModelCall,
    key: str,
    body: dict[str, Any],
) -> Answer:
    """The answer in a model's response body, checked as the SDK's `parse` checks it."""
    choice = (body.get("choices") or [{}])[0] or {}
    message = choice.get("message") or {}
    content, refusal = message.get("content"), message.get("refusal")
    record.response = {"content": content, "refusal": refusal}
    if refusal:
        record.outcome = "refused"
        return Answer(record, key, content, None, None, refusal=conv.placeholders.redact(refusal))
    stopped = _STOPPED.get(choice.get("finish_reason") or "")
    if stopped is not None:
        return Answer(record, key, content, None, stopped)
    if not content:
        # As `parse`: no content and no refusal is no parsed answer (and no error to quote).
        return Answer(record, key, content, None, None)
    try:
        answer_model = model_cls.model_validate_json(content)
    except pydantic.ValidationError as exc:
        return Answer(record, key, content, None, errors(exc))
    return Answer(record, key, content, answer_model, None)


@functools.cache
def response_format(model_cls: type[pydantic.BaseModel]) -> ResponseFormatJSONSchema:
    """The `response_format` the SDK's `parse` would send for `model_cls`, built once.

    Shared by every call: the SDK copies what it sends and never edits it."""
    from openai.lib._parsing._completions import type_to_response_format_param

    return cast("ResponseFormatJSONSchema", type_to_response_format_param(model_cls))


def settle(answer: Answer, conv: Conversation, *, usable: bool) -> None:
    """Once an answer is judged: read back its call's count on the model's breaker and,
    when `usable`, keep it in the response cache. Called on every path (idempotent)."""
    store = usable and not answer.record.cache_hit
    system, answer.uncounted = answer.uncounted, None
    if system is None:
        if store:
            cache.put(answer.cache_key, answer.cached(), conv.cfg.cache.ttl_seconds)
        return
    admission.settle(
        system,
        cache_key=answer.cache_key,
        answer=answer.cached() if store else None,
        ttl_seconds=conv.cfg.cache.ttl_seconds,
    )


def _estimate_tokens(messages: list[dict[str, Any]], schema_chars: int) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in messages) + schema_chars
    return math.ceil(chars / 4) + 16 * len(messages)


@functools.cache
def _schema_chars(model_cls: type[pydantic.BaseModel]) -> int:
    return len(json.dumps(response_format(model_cls)["json_schema"]["schema"]))


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def errors(exc: pydantic.ValidationError) -> str:
    """A validation error as one line per problem (at most eight), for a repair prompt."""
    return one_line(exc, "answer", limit=8)


def describe(exc: Exception) -> str:
    """An SDK error in one short line: class, status, message."""
    status = getattr(exc, "status_code", None)
    return f"{exc.__class__.__name__}{f' {status}' if status else ''}: {str(exc)[:300]}"
