"""The model call's after-call record (app/llm/admission.py `count`, `settle`): the breaker's
count is in Redis when the call returns, the cache store is sent without the calling thread
waiting for Redis's answer and still runs before that thread's next call. Against the
scripted server, real Redis and PostgreSQL."""

from __future__ import annotations

import pytest

from app.controls import breaker
from app.core.redis_line import lines
from tests.integration.test_model_planner import refund_plan, run
from tests.support.model_server import SMALL, ModelServer

pytestmark = pytest.mark.integration


def _window_calls(model: str) -> int:
    from app.core import broker

    return int(broker.client().hget(breaker._keys(f"model:{model}")[2], "calls") or 0)


def test_the_record_is_not_waited_for_and_the_next_call_sees_it(models: ModelServer) -> None:
    models.script({"model": SMALL, "content": refund_plan()})
    run()
    # The plan came back with the store sent and its answer not read: not waited for
    line = lines().line()
    assert len(line.unread) == 1
    # The count was read back: the fleet sees it now
    assert _window_calls(SMALL) == 1
    # And the same thread's next call finds the store: a hit
    _, _, rec = run()
    assert [c.cache_hit for c in rec.model_calls] == [True]
    assert line.unread == [] and len(models.requests()) == 1
