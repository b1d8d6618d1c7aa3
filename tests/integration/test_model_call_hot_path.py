"""What keeps the model call's hot path short keeps its rules: the after-call record
(app/llm/admission.py `count`, `settle`): the breaker's count is in Redis when the call
returns, the cache store is sent without the calling thread waiting for Redis's answer and
still runs before that thread's next call; the untrusted block is redacted once, by the
engine, and nothing of it leaves unredacted. Against the scripted server, real Redis and
PostgreSQL."""

from __future__ import annotations

import pytest

from app.controls import breaker
from app.core.redaction import Placeholders
from app.core.redis_line import lines
from tests.integration.test_model_planner import refund_plan, request, run
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


def test_the_untrusted_block_is_redacted_once_and_leaves_redacted(
    models: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanned: list[str] = []
    redact = Placeholders.redact

    def spy(self: Placeholders, text: str) -> str:
        scanned.append(text)
        return redact(self, text)

    monkeypatch.setattr(Placeholders, "redact", spy)
    models.script({"model": SMALL, "content": refund_plan()})
    run(request("Call me on 020 7946 0958."))
    # The ticket's block was scanned once (the engine's pass before sending)
    assert sum('"subject": "Money back"' in text for text in scanned) == 1
    user = models.requests()[0]["body"]["messages"][1]["content"]
    assert "020 7946 0958" not in user and "ann.lee@example.com" not in user
    assert "[phone_1]" in user and "[email_1]" in user
