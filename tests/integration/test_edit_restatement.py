"""Edits flow through the plan, on PostgreSQL: a reviewer's edit of one step restates the later
pending steps that state a changed value, each as a new revision with its own key, hash and
audit event; steps that state nothing of it keep their revision."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.chain import canonical_json, sha256_hex
from app.core.db import session_scope
from app.errors import InputError
from app.human import decisions
from app.intake import submissions
from app.jobs.steps import Plan, Step
from app.models import AuditEvent, Job, PlanStep
from app.stages.plan import store_plan

pytestmark = pytest.mark.integration

_n = itertools.count(1)
REFUND = {
    "charge_id": "ch_1003",
    "amount": 9000,
    "currency": "usd",
    "reason": "requested_by_customer",
}
REVIEWER = "key:rev"


def stored_job(session: Session, *later: tuple[str, dict[str, Any]]) -> Job:
    """A support_refund job whose stored plan is the refund of 90.00 USD, then `later` steps."""
    n = next(_n)
    sub = submissions.parse_submission(
        {
            "workflow": "support_refund",
            "external_id": f"edit-{n}",
            "delivery_id": f"edit-{n}",
            "requester": "zendesk-user:103",
            "input": {"ticket_id": 4823},
        }
    )
    job, _ = submissions.accept(session, sub, submitted_by="test")
    steps = [Step(tool="stripe.refund", args=REFUND)] + [Step(tool=t, args=a) for t, a in later]
    store_plan(
        session,
        job,
        Plan(workflow="support_refund", summary="", confidence=0.9, steps=steps),
        "rules",
    )
    return job


def steps_of(session: Session, job: Job) -> dict[str, PlanStep]:
    return {
        s.step_id: s for s in session.scalars(select(PlanStep).where(PlanStep.job_id == job.id))
    }


def revised_events(session: Session, job: Job) -> list[dict[str, Any]]:
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.job_id == job.id, AuditEvent.kind == "step_revised")
        .order_by(AuditEvent.id)
    ).all()
    return [dict(e.payload) for e in events]


def test_an_edit_restates_the_later_note_as_a_new_revision(pg_env: Any) -> None:
    with session_scope() as s:
        # Given a refund of 90.00 USD, a note stating it, and a ticket update stating nothing
        job = stored_job(
            s,
            (
                "zendesk.add_comment",
                {
                    "ticket_id": 4823,
                    "public": False,
                    "body": "opsgate refunded $90.00 on charge ch_1003.",
                },
            ),
            ("zendesk.update_ticket", {"ticket_id": 4823, "status": "solved"}),
        )
        before = steps_of(s, job)
        old_note = (before["s2"].idempotency_key, before["s2"].args_hash)
        # When a reviewer edits the refund to 30.00 USD
        restated = decisions.revise(s, job, before["s1"], {**REFUND, "amount": 3000}, REVIEWER)
        s.commit()
        job_id = job.id

    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        after = steps_of(s, job)
        # Then the note is restated from the edit, as its own new revision
        assert restated == ["s2"]
        note = after["s2"]
        assert note.args["body"] == "opsgate refunded 30.00 USD on charge ch_1003."
        assert (note.revision, note.status) == (2, "pending")
        assert note.idempotency_key == f"{job_id}:s2:r2" != old_note[0]
        assert note.args_hash == sha256_hex(canonical_json(note.args)) != old_note[1]
        assert (after["s1"].revision, after["s1"].args["amount"]) == (2, 3000)
        # And the step that states nothing of the edit is left alone
        assert (after["s3"].revision, after["s3"].idempotency_key) == (1, f"{job_id}:s3")
        # And the audit chain says which step's edit the note was restated from
        edited, note_event = revised_events(s, job)
        assert edited["step"] == "s1" and "restated_from" not in edited
        assert note_event["step"] == "s2"
        assert note_event["restated_from"] == {"step": "s1", "revision": 2}
        assert note_event["restated"] == ["amount"]
        assert note_event["appended_executed_amount"] is False
        assert note_event["to"]["key"] == f"{job_id}:s2:r2"


def test_a_bare_old_amount_gets_the_executed_amount_appended_and_audited(pg_env: Any) -> None:
    with session_scope() as s:
        job = stored_job(
            s,
            (
                "zendesk.add_comment",
                {"ticket_id": 4823, "public": False, "body": "Refunded 90 on ch_1003."},
            ),
        )
        restated = decisions.revise(
            s, job, steps_of(s, job)["s1"], {**REFUND, "amount": 3000}, REVIEWER
        )
        s.commit()
        job_id = job.id
    assert restated == ["s2"]
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        note = steps_of(s, job)["s2"]
        assert note.args["body"] == (
            "Refunded 90 on ch_1003.\n\nAmount as executed: 30.00 USD (edited by reviewer)."
        )
        assert note.revision == 2
        assert revised_events(s, job)[-1]["appended_executed_amount"] is True


def test_steps_already_run_are_never_restated(pg_env: Any) -> None:
    with session_scope() as s:
        job = stored_job(
            s,
            (
                "zendesk.add_comment",
                {"ticket_id": 4823, "public": False, "body": "Refunding $90.00."},
            ),
            (
                "zendesk.add_comment",
                {"ticket_id": 4823, "public": False, "body": "Refunded $90.00."},
            ),
        )
        steps = steps_of(s, job)
        steps["s2"].status = "succeeded"  # as if it had run (an edit of a step after it)
        steps["s3"].status = "succeeded"
        assert decisions.revise(s, job, steps["s1"], {**REFUND, "amount": 3000}, REVIEWER) == []
        assert [steps["s2"].revision, steps["s3"].revision] == [1, 1]
        s.rollback()


def test_a_restatement_that_cannot_be_made_refuses_the_whole_edit(pg_env: Any) -> None:
    with session_scope() as s:
        job = stored_job(s, ("zendesk.update_ticket", {"ticket_id": 4823, "tags": ["refund-90"]}))
        s.commit()
        job_id = job.id
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        with pytest.raises(InputError, match="step s2 .*old amount without a currency"):
            decisions.revise(s, job, steps_of(s, job)["s1"], {**REFUND, "amount": 3000}, REVIEWER)
        s.rollback()
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert [st.revision for st in steps_of(s, job).values()] == [1, 1]
