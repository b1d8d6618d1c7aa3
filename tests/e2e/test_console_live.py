"""A reviewer's live read of an escalation's target, end to end: a real worker planned a refund
over the autonomy cap against the sandbox's Stripe; the reviewer reads the charge now from the
console, someone else refunds part of it meanwhile, and the next read shows the difference,
says the proposal now fails its rule, and offers to verify it again. Every read is on the job's
audit trail under the reviewer's identity."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.models import AuditEvent, Escalation, ToolCall
from tests.support.console import signed_in
from tests.support.env import reset_process_state
from tests.support.jobs import settle, submit_ticket
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.e2e

KEYS = "lead@example.com:reviewer:lead-key-0002"


@pytest.fixture
def console(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    reset_process_state()
    start_worker()
    from app.api.main import create_app

    with TestClient(create_app()) as client:
        yield client


def test_a_live_read_shows_the_charge_now_and_what_changed_since_the_proposal(
    console: TestClient, sandbox: Sandbox
) -> None:
    # Given ticket 4823's refund of 90.00 USD on the 120.00 USD charge ch_1003, escalated
    job_id = submit_ticket(4823, 103, "live-1")
    assert settle(job_id) == "escalated"
    with session_scope() as s:
        esc_id = s.scalars(select(Escalation.id).where(Escalation.job_id == job_id)).one()
    csrf = signed_in(console, "lead-key-0002")
    page = console.get(f"/ui/escalations/{esc_id}").text
    assert 'id="read-live"' in page

    # When the reviewer reads the target now, nothing has changed
    first = console.post(f"/ui/escalations/{esc_id}/read-live", data={"csrf_token": csrf})
    assert first.status_code == 200, first.text
    assert "Nothing changed since the proposal" in first.text
    assert "stripe.get_charge" in first.text and 'id="reverify"' not in first.text

    # Meanwhile 50.00 USD of the charge is refunded outside opsgate
    answer = httpx.post(
        f"{sandbox.url}/v1/refunds",
        data={"charge": "ch_1003", "amount": "5000"},
        headers={"Authorization": "Bearer sk_test_sandbox"},
    )
    assert answer.status_code == 200, answer.text

    # Then the next read shows the change and that the proposal fails its rule now
    second = console.post(f"/ui/escalations/{esc_id}/read-live", data={"csrf_token": csrf})
    assert "changed in a way the verifiers care about" in second.text
    assert "amount_within_refundable" in second.text and 'id="reverify"' in second.text
    diff = second.text[second.text.index('id="diff-') :]
    assert "amount_refunded" in diff[:2000] and "5000" in diff[:2000]

    # And both reads are recorded on the job's trail as the reviewer's
    with session_scope() as s:
        reads = s.scalars(
            select(ToolCall).where(ToolCall.job_id == job_id, ToolCall.stage == "review")
        ).all()
        actors = set(
            s.scalars(
                select(AuditEvent.actor).where(
                    AuditEvent.job_id == job_id, AuditEvent.kind == "tool_call"
                )
            )
        )
    assert len([r for r in reads if r.tool == "stripe.get_charge"]) == 2
    assert "key:lead@example.com" in actors
    assert "Hash chain verified" in second.text


def test_a_live_read_needs_the_forms_token(console: TestClient, sandbox: Sandbox) -> None:
    job_id = submit_ticket(4823, 103, "live-2")
    assert settle(job_id) == "escalated"
    with session_scope() as s:
        esc_id = s.scalars(select(Escalation.id).where(Escalation.job_id == job_id)).one()
    signed_in(console, "lead-key-0002")

    assert console.post(f"/ui/escalations/{esc_id}/read-live").status_code == 403
    with session_scope() as s:
        assert s.scalars(select(ToolCall).where(ToolCall.stage == "review")).all() == []
