"""The model call's hot path (app/llm/engine.py, app/llm/admission.py) against the scripted
server, real Redis and PostgreSQL: the request carries the schema `parse` would send, the
answer is checked as `parse` checks it, and the one Redis round trip before the call keeps
the breaker's, cache's and budget's rules."""

from __future__ import annotations

import json

import pytest
from openai.lib._parsing._completions import type_to_response_format_param

from app.controls import breaker, budget
from app.errors import EscalationRequired
from app.llm.schema import plan_model
from tests.integration.test_model_planner import refund_plan, request, run
from tests.support.model_server import LARGE, SMALL, ModelServer

pytestmark = pytest.mark.integration


def test_every_request_carries_the_strict_schema_parse_would_send(models: ModelServer) -> None:
    models.script({"model": SMALL, "content": refund_plan(), "times": 2})
    run(request("First ticket."))
    run(request("Second ticket."))
    expected = json.loads(json.dumps(type_to_response_format_param(plan_model())))
    sent = [r["body"]["response_format"] for r in models.requests()]
    # The schema built once is sent unchanged by every call (the SDK does not edit it)
    assert sent == [expected, expected]


def test_a_cache_hit_reserves_no_budget(models: ModelServer) -> None:
    models.script({"model": SMALL, "content": refund_plan()})
    run()
    held = budget.held("support_refund")
    assert held > 0
    _, _, rec = run()
    [call] = rec.model_calls
    assert call.cache_hit and call.settle is None
    assert budget.held("support_refund") == held


def test_an_answer_cut_off_at_the_length_limit_is_fed_back_as_invalid(
    models: ModelServer,
) -> None:
    cut = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": SMALL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"workflow": "supp', "refusal": None},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    models.script(
        {"model": SMALL, "match": "That answer is not valid", "content": refund_plan()},
        {"model": SMALL, "raw": json.dumps(cut)},
    )
    plan, tier, rec = run()
    assert tier == "small" and plan.steps
    assert [c.outcome for c in rec.model_calls] == ["invalid", "ok"]
    assert "length limit" in models.requests()[1]["body"]["messages"][-1]["content"]


def test_an_open_breaker_refuses_before_the_cache_and_the_budget(models: ModelServer) -> None:
    # Given an answer in the cache and the model's breaker then opened
    models.script({"content": refund_plan(), "times": -1})
    run()
    held = budget.held("support_refund")
    for _ in range(20):
        breaker.record(f"model:{SMALL}", ok=False)
    assert breaker.status(f"model:{SMALL}")["state"] == "open"
    # When the same request is planned again
    _, tier, rec = run()
    # Then the small model is skipped without its cache answering, and nothing was reserved
    # for it: the large model's call is the only one recorded
    assert tier == "large"
    assert [(c.model, c.cache_hit) for c in rec.model_calls] == [(LARGE, False)]
    assert budget.held("support_refund") > held
    assert [r["model"] for r in models.requests()] == [SMALL, LARGE]


def _counted(model: str) -> int:
    from app.core import broker

    client = broker.client()
    return sum(
        int(client.hget(key, "calls") or 0)
        for key in client.scan_iter(f"opsgate:breaker:model:{model}:win:*")
    )


def test_the_breaker_counts_every_answered_call_invalid_refused_or_ok(
    models: ModelServer,
) -> None:
    models.script({"model": SMALL, "content": refund_plan()})
    run()
    assert _counted(SMALL) == 1
    _, _, rec = run()
    assert rec.model_calls[-1].cache_hit and _counted(SMALL) == 1  # a hit is no call
    # An invalid answer, then a valid one: both calls counted
    models.script(
        {"model": SMALL, "match": "That answer is not valid", "content": refund_plan()},
        {"model": SMALL, "content": "not json"},
    )
    run(request("A second ticket."))
    assert _counted(SMALL) == 3
    # A refusal is an answered call too
    models.script({"model": SMALL, "refusal": "No."})
    with pytest.raises(EscalationRequired):
        run(request("A third ticket."))
    assert _counted(SMALL) == 4
