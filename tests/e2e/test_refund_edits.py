"""A reviewer's edit flows through the plan, end to end: a support refund over the autonomy cap
submitted to a real API process, real workers on PostgreSQL and Redis, the sandbox's Stripe
and Zendesk. The reviewer edits the refund down; the refund runs for the edited amount and
the internal note written after it states that amount, not the one first planned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest

from app.jobs import lifecycle
from app.reading.amounts import StatedAmount, find_amounts
from tests.support.env import reset_process_state
from tests.support.fleet import ApiFleet
from tests.support.sandbox import Sandbox
from tools.zendesk import client as zendesk_api

pytestmark = pytest.mark.e2e

# The help desk submits; a support lead reviews; Carol holds a reviewer key too, and is the
# customer this refund is for, so she may not decide it.
KEYS = (
    "helpdesk:requester:desk-key-0001,lead@example.com:reviewer:lead-key-0002,"
    "carol@example.com:reviewer:carol-key-0003"
)
DESK = {"Authorization": "Bearer desk-key-0001"}
LEAD = {"Authorization": "Bearer lead-key-0002"}
CAROL = {"Authorization": "Bearer carol-key-0003"}


@dataclass
class Fleet(ApiFleet):
    """The running system, with support_refund submissions over POST /v1/jobs."""

    reviewer: ClassVar[dict[str, str]] = LEAD

    def submit(self, ticket_id: int, requester: str) -> str:
        body = {
            "workflow": "support_refund",
            "external_id": f"ZD-{ticket_id}",
            "requester": requester,
            "input": {"ticket_id": ticket_id},
        }
        resp = httpx.post(f"{self.api}/v1/jobs", json=body, headers=DESK)
        assert resp.status_code == 202, resp.text
        return str(resp.json()["job_id"])


@pytest.fixture
def fleet(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, start_api: Any, monkeypatch: Any
) -> Fleet:
    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    reset_process_state()
    start_worker()
    return Fleet(str(start_api()), sandbox)


def test_an_edited_refund_is_made_and_noted_for_the_edited_amount(fleet: Fleet) -> None:
    # Given Carol's ticket 4823 asking for $90.00, over the 50.00 USD autonomy cap
    job_id = fleet.submit(4823, requester="carol@example.com")
    escalation = fleet.escalated(job_id, "approval_required")
    assert escalation["evidence"]["step_id"] == "s1"
    planned = fleet.job(job_id)["steps"]
    assert [(s["step_id"], s["tool"]) for s in planned] == [
        ("s1", "stripe.refund"),
        ("s2", "zendesk.add_comment"),
    ]
    assert find_amounts(planned[1]["args"]["body"]) == [StatedAmount(9000, "usd")]
    edited = {**planned[0]["args"], "amount": 3000}

    # The requester may not decide her own refund, even with a reviewer key
    own = fleet.decide(escalation, {"decision": "edit", "args": edited}, headers=CAROL)
    assert own.status_code == 403 and "separation of duties" in own.json()["detail"]

    # When the support lead edits the refund to 30.00 USD
    resp = fleet.decide(escalation, {"decision": "edit", "args": edited, "note": "30 agreed"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["restated_steps"] == ["s2"]

    # Then the job completes
    detail = fleet.settle(job_id)
    assert detail["status"] == lifecycle.COMPLETED, detail["escalation"]
    # Both steps ran as their second revision: the refund edited, the note restated from it
    assert [(s["step_id"], s["revision"], s["status"]) for s in detail["steps"]] == [
        ("s1", 2, "succeeded"),
        ("s2", 2, "succeeded"),
    ]
    assert detail["steps"][1]["idempotency_key"] == f"{job_id}:s2:r2"

    # And Stripe made exactly one refund, of 30.00 USD, under the edited revision's key
    [refund] = fleet.sandbox.applied("stripe")
    assert (refund["body"]["charge"], int(refund["body"]["amount"])) == ("ch_1003", 3000)
    assert refund["idempotency_key"] == f"opsgate-{job_id}-s1-r2"

    # And the note on the ticket states 30.00 USD and nowhere 90.00
    assert len(fleet.sandbox.applied("zendesk")) == 1
    notes = [c for c in zendesk_api.list_comments(4823) if "opsgate refunded" in c["body"]]
    assert len(notes) == 1, notes
    body = notes[0]["body"]
    assert find_amounts(body) == [StatedAmount(3000, "usd")]
    assert "30.00 USD" in body
    assert "90.00" not in body and "$90" not in body
    assert notes[0]["public"] is False
