"""A reviewer's edit flows through the plan, end to end: a support refund over the autonomy cap
submitted to a real API process, real workers on PostgreSQL and Redis, the sandbox's Stripe
and Zendesk. The reviewer edits the refund down; the refund runs for the edited amount and
the internal note written after it states that amount, not the one first planned. A revise
has the reviewer's amount verified before anyone approves it: a new escalation asks for the
approval of a revision that passed its facts, and one that fails them is never put up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import ToolCall
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


def tool_calls(job_id: str) -> list[tuple[str, str]]:
    """The job's downstream calls so far, as (stage, tool), in the order they were made."""
    with session_scope() as session:
        rows = session.scalars(
            select(ToolCall).where(ToolCall.job_id == job_id).order_by(ToolCall.id)
        )
        return [(r.stage, r.tool) for r in rows]


def revise_refund(fleet: Fleet, job_id: str, amount: int) -> dict[str, Any]:
    """Revise the refund of the job's open escalation to `amount`; returns the answer."""
    escalation = fleet.job(job_id)["escalation"]
    refund = next(s for s in fleet.job(job_id)["steps"] if s["tool"] == "stripe.refund")
    body = {"decision": "revise", "args": {**refund["args"], "amount": amount}, "note": "agreed"}
    resp = fleet.decide(escalation, body)
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    assert (answer["decision"], answer["job_status"]) == ("revise", lifecycle.PLANNED)
    return answer


def test_a_revised_refund_is_verified_then_approved_and_made_once_for_the_revised_amount(
    fleet: Fleet,
) -> None:
    # Given Carol's ticket 4823 asking for $90.00, over the 50.00 USD autonomy cap
    job_id = fleet.submit(4823, requester="carol@example.com")
    first = fleet.escalated(job_id, "approval_required")

    # When the support lead revises the refund to $60.00, still over the cap
    answer = revise_refund(fleet, job_id, 6000)
    assert (answer["step"], answer["revision"], answer["restated_steps"]) == ("s1", 2, ["s2"])

    # Then the job comes back for the approval of revision 2, with the verdicts that passed
    second = fleet.escalated(job_id, "approval_required")
    assert second["id"] != first["id"]
    evidence = second["evidence"]
    assert (evidence["step_id"], evidence["revision"]) == ("s1", 2)
    verified = evidence["verified"]
    assert verified and all(v["ok"] for v in verified)
    assert {"amount_within_refundable", "not_already_refunded"} <= {v["rule"] for v in verified}
    assert fleet.sandbox.applied("stripe") == []

    # When the lead approves it
    resp = fleet.decide(second, {"decision": "approve", "note": "facts checked"})
    assert resp.status_code == 200, resp.text

    # Then exactly one refund is made, of $60.00 under revision 2's key, none of $90.00
    detail = fleet.settle(job_id)
    assert detail["status"] == lifecycle.COMPLETED, detail["escalation"]
    [refund] = fleet.sandbox.applied("stripe")
    assert (refund["body"]["charge"], int(refund["body"]["amount"])) == ("ch_1003", 6000)
    assert refund["idempotency_key"] == f"opsgate-{job_id}-s1-r2"
    notes = [c for c in zendesk_api.list_comments(4823) if "opsgate refunded" in c["body"]]
    assert [find_amounts(n["body"]) for n in notes] == [[StatedAmount(6000, "usd")]]


def test_a_revision_that_fails_its_facts_escalates_and_writes_nothing(fleet: Fleet) -> None:
    # Given the $90.00 refund waiting for approval
    job_id = fleet.submit(4823, requester="carol@example.com")
    fleet.escalated(job_id, "approval_required")

    # When a reviewer revises it to $150.00 of the $120.00 charge
    revise_refund(fleet, job_id, 15000)

    # Then nobody is asked to approve it: the rule that refused it is named
    failed = fleet.escalated(job_id, "verification_failed")
    assert (failed["evidence"]["step_id"], failed["evidence"]["rule"]) == (
        "s1",
        "amount_within_refundable",
    )
    assert "verified" not in failed["evidence"]
    assert fleet.sandbox.applied() == []

    # And the reviewer can correct what failed: the next revision passes and waits for approval
    assert revise_refund(fleet, job_id, 6000)["revision"] == 3
    again = fleet.escalated(job_id, "approval_required")
    assert again["evidence"]["revision"] == 3 and again["evidence"]["verified"]
    assert fleet.sandbox.applied() == []


def test_a_plan_nobody_revised_asks_for_approval_before_any_fact_is_read(fleet: Fleet) -> None:
    job_id = fleet.submit(4823, requester="carol@example.com")

    escalation = fleet.escalated(job_id, "approval_required")

    assert "verified" not in escalation["evidence"]
    assert escalation["evidence"]["revision"] == 1
    # The planner's reads and nothing more: the verify stage stopped at the policy
    assert tool_calls(job_id) == [
        ("plan", "zendesk.get_ticket"),
        ("plan", "stripe.get_charge"),
        ("plan", "stripe.list_charges"),
        ("plan", "zendesk.list_comments"),
    ]
