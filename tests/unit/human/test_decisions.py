"""app/human/decisions.py: the person behind a reviewer's actor, for separation of duties;
deciding (approve, edit, revise, reject) and claiming escalations on the embedded SQLite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from app.audit import chain
from app.controls import approvals, policy
from app.core.db import session_scope
from app.errors import ConflictError, Forbidden, InputError
from app.human import decisions
from app.human.decisions import person, same_person
from app.jobs import lifecycle
from app.models import Approval, AuditEvent, Escalation, Job, PlanStep, utcnow
from tests.support.jobs import escalated_refund


@pytest.mark.parametrize(
    ("actor", "who"),
    [
        ("key:alice@example.com", "alice@example.com"),
        ("key:Rita", "rita"),
        ("sso:alice@example.com", "alice@example.com"),
        ("sso:Alice@Example.com", "alice@example.com"),
        ("cli:alice@build-host", "alice"),
        ("reviewer:rita", "reviewer:rita"),
    ],
)
def test_the_person_behind_an_actor(actor: str, who: str) -> None:
    assert person(actor) == who


@pytest.mark.parametrize(
    ("actor", "requester", "same"),
    [
        ("key:alice@example.com", "alice@example.com", True),
        ("key:ALICE@example.com", "alice@example.com", True),
        ("cli:alice@laptop", "alice@example.com", True),
        ("key:bob@example.com", "alice@example.com", False),
        ("sso:alice@example.com", "alice@example.com", True),
        ("sso:bob@example.com", "alice@example.com", False),
        ("key:rev", "zendesk-user:101", False),
        ("key:rev", "key:rev", True),
        ("cli:root@host", "zendesk-user:101", False),
    ],
)
def test_a_requester_is_recognized_behind_a_key_or_a_cli_user(
    actor: str, requester: str, same: bool
) -> None:
    assert same_person(actor, requester) is same


# Deciding and claiming an escalation, on the embedded SQLite.

REFUND = {
    "charge_id": "ch_1003",
    "amount": 9000,
    "currency": "usd",
    "reason": "requested_by_customer",
}
RITA, BOB = "key:rita@example.com", "key:bob@example.com"


@pytest.fixture
def escalated(sqlite_db: Any) -> Callable[..., tuple[str, int]]:
    """A planned job for one over-the-cap refund (REFUND), escalated with `reason` for step
    s1; returns the job's and the escalation's ids."""
    return lambda reason="approval_required": escalated_refund(reason=reason, args=REFUND)


def decide(esc_id: int, actor: str, **body: Any) -> dict[str, Any]:
    with session_scope() as session:
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        done = decisions.decide(session, esc, decisions.Decision(**body), actor)
        session.commit()
        return done


def test_an_approval_issues_a_token_for_the_step_and_sends_the_job_back(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    job_id, esc_id = escalated()

    done = decide(esc_id, RITA, decision="approve", note="checked the charge")

    assert (done["decision"], done["job_status"], done["approvers"]) == (
        "approve",
        lifecycle.PLANNED,
        [RITA],
    )
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == lifecycle.PLANNED
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        assert (esc.status, esc.decision, esc.decided_by, esc.note) == (
            "closed",
            "approve",
            RITA,
            "checked the charge",
        )
        approval = session.get(Approval, done["approval_id"])
        assert approval is not None and approval.approvers == [RITA]
        step = session.query(PlanStep).filter_by(job_id=job_id, step_id="s1").one()
        version = policy.workflow_policy("support_refund")[1]
        assert approval.action_hash == approvals.action_hash(job_id, step, version)
        event = session.query(AuditEvent).filter_by(job_id=job_id, kind="approval").one()
        assert event.payload["approval_id"] == approval.id
        assert (event.payload["step"], event.payload["revision"]) == ("s1", 1)
        assert chain.verify_job(session, job_id) is None


def test_a_rejection_needs_a_reason_code_and_ends_the_job(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    job_id, esc_id = escalated()
    with pytest.raises(InputError, match="reason_code"):
        decide(esc_id, RITA, decision="reject")

    done = decide(esc_id, RITA, decision="reject", reason_code="wrong_amount", note="it was $30")

    assert done == {"escalation_id": esc_id, "decision": "reject", "job_status": "rejected"}
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason) == (lifecycle.REJECTED, "rejected: wrong_amount")
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        assert (esc.decision, esc.note) == ("reject", "wrong_amount: it was $30")
        assert session.query(Approval).filter_by(job_id=job_id).count() == 0
        event = session.query(AuditEvent).filter_by(job_id=job_id, kind="decision").one()
        assert event.payload["reason_code"] == "wrong_amount"


def test_an_edit_makes_the_next_revision_with_a_new_key_and_approves_it(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    job_id, esc_id = escalated()

    done = decide(esc_id, RITA, decision="edit", args=dict(REFUND, amount=3000))

    assert done["job_status"] == lifecycle.PLANNED
    with session_scope() as session:
        rows = (
            session.query(PlanStep)
            .filter_by(job_id=job_id, step_id="s1")
            .order_by(PlanStep.revision)
            .all()
        )
        assert [(r.revision, r.args["amount"]) for r in rows][-1] == (2, 3000)
        assert rows[-1].idempotency_key == f"{job_id}:s1:r2"
        approval = session.get(Approval, done["approval_id"])
        assert approval is not None and approval.step_pk == rows[-1].id


def test_the_requester_cannot_decide_their_own_job(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    job_id, esc_id = escalated()  # requested by alice@example.com

    with pytest.raises(Forbidden, match="separation of duties"):
        decide(esc_id, "key:alice@example.com", decision="approve")

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == lifecycle.ESCALATED


def test_only_approvable_reasons_can_be_approved(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    _, esc_id = escalated("verification_failed")

    with pytest.raises(InputError, match="only .* can be approved"):
        decide(esc_id, RITA, decision="approve")


def test_an_escalation_is_decided_once(escalated: Callable[..., tuple[str, int]]) -> None:
    _, esc_id = escalated()
    decide(esc_id, RITA, decision="approve")

    with pytest.raises(ConflictError, match="already decided"):
        decide(esc_id, BOB, decision="reject", reason_code="other")


def test_a_claim_keeps_others_from_deciding_and_the_holder_may_renew(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    _, esc_id = escalated()
    with session_scope() as session:
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        held = decisions.claim(session, esc, RITA)
        session.commit()
    assert held["claimed_by"] == RITA

    with session_scope() as session:
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        with pytest.raises(ConflictError, match=f"claimed by {RITA}"):
            decisions.claim(session, esc, BOB)
        assert decisions.claim(session, esc, RITA)["claimed_by"] == RITA
        session.commit()
    with pytest.raises(ConflictError, match=f"claimed by {RITA}"):
        decide(esc_id, BOB, decision="approve")
    assert decide(esc_id, RITA, decision="approve")["approvers"] == [RITA]


def test_a_claim_that_ran_out_can_be_taken_by_anyone(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    _, esc_id = escalated()
    with session_scope() as session:
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        decisions.claim(session, esc, RITA)
        esc.claimed_until = utcnow() - timedelta(seconds=1)
        session.commit()

    with session_scope() as session:
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        assert decisions.claim(session, esc, BOB)["claimed_by"] == BOB
        session.commit()
        assert esc.claimed_by == BOB


# Revise: the reviewer's arguments are verified again before anyone approves them.


def test_a_revise_makes_the_next_revision_and_sends_it_to_be_verified_without_an_approval(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    job_id, esc_id = escalated()

    done = decide(esc_id, RITA, decision="revise", args=dict(REFUND, amount=6000), note="60 agreed")

    assert done == {
        "escalation_id": esc_id,
        "decision": "revise",
        "job_status": lifecycle.PLANNED,
        "step": "s1",
        "revision": 2,
        "restated_steps": [],
    }
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason) == (
            lifecycle.PLANNED,
            f"revised by {RITA}: re-verifying revision 2",
        )
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        assert (esc.status, esc.decision, esc.decided_by, esc.note) == (
            "closed",
            "revise",
            RITA,
            "60 agreed",
        )
        step = session.query(PlanStep).filter_by(job_id=job_id, step_id="s1").one()
        assert (step.revision, step.args["amount"]) == (2, 6000)
        assert step.idempotency_key == f"{job_id}:s1:r2"
        # Nothing is approved yet: the new revision's facts come first
        assert session.query(Approval).filter_by(job_id=job_id).count() == 0
        assert session.query(AuditEvent).filter_by(job_id=job_id, kind="approval").count() == 0
        event = session.query(AuditEvent).filter_by(job_id=job_id, kind="decision").one()
        assert event.actor == RITA
        assert {k: v for k, v in event.payload.items() if k != "at"} == {
            "escalation": esc_id,
            "decision": "revise",
            "step": "s1",
            "revision": 2,
        }
        assert chain.verify_job(session, job_id) is None


def test_a_revise_may_correct_what_failed_its_facts(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    job_id, esc_id = escalated("verification_failed")

    done = decide(esc_id, RITA, decision="revise", args=dict(REFUND, amount=3000))

    assert (done["job_status"], done["revision"]) == (lifecycle.PLANNED, 2)


@pytest.mark.parametrize(
    ("reason", "actor", "args", "error", "message"),
    [
        ("approval_required", "key:alice@example.com", {"amount": 3000}, Forbidden, "separation"),
        ("policy_blocked", RITA, {"amount": 3000}, InputError, "only .* can be revised"),
        ("approval_required", RITA, {"amount": -1}, InputError, "edited arguments"),
        ("approval_required", RITA, None, InputError, "needs args"),
    ],
)
def test_a_revise_is_refused_and_changes_nothing(
    escalated: Callable[..., tuple[str, int]],
    reason: str,
    actor: str,
    args: dict[str, Any] | None,
    error: type[Exception],
    message: str,
) -> None:
    # Given an escalation of a job alice requested
    job_id, esc_id = escalated(reason)

    # When a revise is refused (alice herself, a reason nobody may revise, bad arguments)
    with pytest.raises(error, match=message):
        decide(esc_id, actor, decision="revise", args=None if args is None else REFUND | args)

    # Then the job waits as it was, on the first revision
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == lifecycle.ESCALATED
        esc = session.get(Escalation, esc_id)
        assert esc is not None and esc.status == "open"
        step = session.query(PlanStep).filter_by(job_id=job_id, step_id="s1").one()
        assert step.revision == 1


def test_a_revise_is_refused_while_another_reviewer_holds_the_claim(
    escalated: Callable[..., tuple[str, int]],
) -> None:
    _, esc_id = escalated()
    with session_scope() as session:
        esc = session.get(Escalation, esc_id)
        assert esc is not None
        decisions.claim(session, esc, RITA)
        session.commit()

    with pytest.raises(ConflictError, match=f"claimed by {RITA}"):
        decide(esc_id, BOB, decision="revise", args=dict(REFUND, amount=3000))
