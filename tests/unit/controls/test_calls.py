"""app/controls/calls.py: the call recorder runs each call past the gates at the call, records
what it asked, what came back and how it ended, and writes the calls with their audit events
in the stage's transaction; on real Redis and SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from app.audit import chain as audit
from app.controls import breaker
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.errors import CircuitOpen, KillSwitchEngaged, PermanentError, RetryableError
from app.models import AuditEvent, ToolCall
from app.settings import get_settings
from tests.support.env import reset_process_state

COMMENTS = [{"id": 1, "body": "please refund", "author_id": 101}]


@pytest.fixture
def recorder_env(
    sqlite_db: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], None]:
    """SQLite and the test's Redis; `switch(yaml)` rewrites the kill switch file."""
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    monkeypatch.setenv("OPSGATE_BREAKER_MIN_CALLS", "2")
    redis.Redis.from_url(redis_db_url).flushdb()
    reset_process_state()

    def switch(text: str) -> None:
        import shutil

        from app.settings import PROJECT_ROOT

        folder = sqlite_db.parent / "config"
        if not folder.exists():
            shutil.copytree(PROJECT_ROOT / "config", folder)
        (folder / "killswitch.yaml").write_text(text)
        monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(folder))
        get_settings.cache_clear()
        reset_process_state()

    return switch


def test_a_read_is_recorded_with_its_service_identity(recorder_env: Any) -> None:
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")
    got = rec.read("zendesk.list_comments", {"ticket_id": 4821}, lambda: COMMENTS)
    assert got == COMMENTS
    [call] = rec.calls
    assert (call.tool, call.system, call.outcome) == ("zendesk.list_comments", "zendesk", "ok")
    assert call.service_identity.startswith("zendesk:")
    assert call.request == {"ticket_id": 4821}
    assert call.response == {"items": COMMENTS}  # a list answer is kept under "items"


def test_a_repeated_read_answers_a_copy_no_caller_can_change(recorder_env: Any) -> None:
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")
    sent: list[int] = []

    def fetch() -> list[dict[str, Any]]:
        sent.append(1)
        return [dict(c) for c in COMMENTS]

    first = rec.read("zendesk.list_comments", {"ticket_id": 4821}, fetch)
    first[0]["body"] = "changed by the first caller"
    second = rec.read("zendesk.list_comments", {"ticket_id": 4821}, fetch)
    second.append({"id": 2})
    third = rec.read("zendesk.list_comments", {"ticket_id": 4821}, fetch)
    assert (second[:1], third, len(sent)) == (COMMENTS, COMMENTS, 1)


def test_a_failed_call_is_recorded_and_counted_by_the_breaker(recorder_env: Any) -> None:
    rec = CallRecorder(stage="execute", workflow="support_refund")

    def timeout() -> Any:
        raise RetryableError("zendesk timed out")

    for _ in range(2):
        with pytest.raises(RetryableError):
            rec.read("zendesk.list_comments", {"ticket_id": 1}, timeout)
    assert [c.outcome for c in rec.calls] == ["error", "error"]
    assert rec.calls[0].response == {"error": "RetryableError: zendesk timed out"}
    # Two failures of two calls open Zendesk's breaker: the next call parks.
    with pytest.raises(CircuitOpen):
        rec.read("zendesk.list_comments", {"ticket_id": 1}, lambda: COMMENTS)
    assert len(rec.calls) == 2  # the refused call never ran


def test_a_4xx_answer_does_not_count_against_the_system(recorder_env: Any) -> None:
    rec = CallRecorder(stage="execute", workflow="support_refund")

    def refused() -> Any:
        raise PermanentError("422: invalid amount")

    for _ in range(3):
        with pytest.raises(PermanentError):
            rec.read("stripe.list_charges", {"customer": "cus_1"}, refused)
    assert breaker.status("stripe")["state"] == "closed"


def test_the_kill_switch_stops_a_catalog_call_before_it_runs(
    recorder_env: Callable[[str], None],
) -> None:
    recorder_env("global: false\ntools: {zendesk.get_ticket: true}\n")
    rec = CallRecorder(stage="plan", workflow="support_refund")
    with pytest.raises(KillSwitchEngaged):
        rec.tool("zendesk.get_ticket", {"ticket_id": 4821})
    assert rec.calls == []


def test_invalid_arguments_are_refused_before_any_gate_or_call(recorder_env: Any) -> None:
    rec = CallRecorder(stage="plan", workflow="support_refund")
    with pytest.raises(PermanentError, match="invalid arguments for zendesk.get_ticket"):
        rec.tool("zendesk.get_ticket", {"ticket_id": "four"})
    assert rec.calls == []


def test_write_stores_the_calls_with_one_audit_event_each(
    recorder_env: Any, new_job: Callable[..., str]
) -> None:
    job_id = new_job()
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")
    rec.read("zendesk.list_comments", {"ticket_id": 4821}, lambda: COMMENTS)
    with session_scope() as session:
        before = audit.count(session, job_id)
        rec.write(session, job_id, requester="alice@example.com")
        session.commit()
    assert rec.calls == []  # written once: a second write adds nothing
    with session_scope() as session:
        [row] = session.scalars(select(ToolCall).where(ToolCall.job_id == job_id)).all()
        assert (row.tool, row.stage, row.outcome) == (
            "zendesk.list_comments",
            "verify_proposal",
            "ok",
        )
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.job_id == job_id, AuditEvent.kind == "tool_call")
        ).all()
        assert audit.count(session, job_id) == before + 1
        [event] = events
        assert event.payload["tool_call_id"] == row.id
        # The chain holds references and hashes, never the requester or the data itself.
        assert "alice" not in str(event.payload)
        assert event.payload["response_sha256"] == audit.sha256_hex(
            audit.canonical_json({"items": COMMENTS})
        )
