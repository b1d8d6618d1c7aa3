"""app/human/escalation.py: opening an escalation on the embedded SQLite (the job moves to the
human queue, the audit chain records it), partial plans, incidents, and notification stamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.audit import chain
from app.core.db import session_scope
from app.human import escalation
from app.jobs import lifecycle
from app.jobs.steps import step_key
from app.models import AuditEvent, Escalation, Job, JobEvent, PlanStep, StepStatus, utcnow
from tests.support.env import reset_process_state


def add_step(session: Session, job: Job, position: int, tool: str, status: str) -> PlanStep:
    """A stored plan step of the job, in `status`, with a result id once it succeeded."""
    step_id = f"s{position + 1}"
    step = PlanStep(
        job_id=job.id,
        step_id=step_id,
        revision=1,
        position=position,
        tool=tool,
        args={},
        args_hash="0" * 64,
        idempotency_key=step_key(job.id, step_id, 1),
        status=status,
        result={"id": f"res_{position}"} if status == StepStatus.SUCCEEDED else None,
    )
    session.add(step)
    session.flush()
    session.refresh(job)
    return step


def escalate(session: Session, job: Job, reason: str, stage: str, **evidence: object) -> Escalation:
    return escalation.escalate(
        session,
        job,
        reason=reason,
        detail="asked by alice@example.com",
        evidence=dict(evidence),
        stage=stage,
        actor="test",
    )


def test_an_escalation_moves_the_job_to_the_human_queue_and_into_the_audit_chain(
    new_job: Callable[..., str],
) -> None:
    job_id = new_job()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        esc = escalate(session, job, "verification_failed", "verify", rule="amount_matches")
        session.commit()
        esc_id = esc.id

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == lifecycle.ESCALATED and not job.incident
        stored = session.get(Escalation, esc_id)
        assert stored is not None
        assert (stored.reason, stored.stage, stored.status) == (
            "verification_failed",
            "verify",
            "open",
        )
        assert stored.evidence == {"rule": "amount_matches"}
        # Only what a reviewer approves has a decision deadline.
        assert stored.deadline is None
        event = session.query(JobEvent).filter_by(job_id=job_id, to_status="escalated").one()
        assert event.reason is not None and event.reason.startswith("verification_failed: ")
        audit = session.query(AuditEvent).filter_by(job_id=job_id, kind="escalation").one()
        assert {k: v for k, v in audit.payload.items() if k != "at"} == {
            "reason": "verification_failed",
            "detail": "asked by [email]",
            "stage": "verify",
            "evidence_keys": ["rule"],
        }
        assert chain.verify_job(session, job_id) is None


def test_an_approvable_escalation_has_a_deadline_from_the_settings(
    new_job: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_DECISION_DEADLINE", "600")
    reset_process_state()
    job_id = new_job()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        before = utcnow()
        esc = escalate(session, job, "approval_required", "verify")
        assert esc.deadline is not None
        assert before + timedelta(seconds=600) <= esc.deadline <= utcnow() + timedelta(seconds=600)


def test_a_reason_outside_the_taxonomy_is_refused_before_anything_changes(
    new_job: Callable[..., str],
) -> None:
    job_id = new_job()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        with pytest.raises(ValueError, match="not in the taxonomy"):
            escalate(session, job, "felt_wrong", "plan")
        assert job.status == lifecycle.QUEUED
        assert session.query(Escalation).filter_by(job_id=job_id).count() == 0


def test_a_stop_after_a_write_is_partial_and_lists_the_writes(
    new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    job_id = new_job()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        walk(session, job, lifecycle.PLANNED, lifecycle.READY)
        add_step(session, job, 0, "stripe.get_charge", StepStatus.SUCCEEDED)
        add_step(session, job, 1, "stripe.refund", StepStatus.SUCCEEDED)
        add_step(session, job, 2, "zendesk.add_comment", StepStatus.PENDING)
        job.current_step = 2

        esc = escalate(session, job, "verification_failed", "execute", rule="x")

        assert esc.reason == "partial"
        assert esc.evidence["original_reason"] == "verification_failed"
        # Reads and steps not yet run are not writes that happened.
        assert esc.evidence["completed_steps"] == [
            {"step": "s2", "tool": "stripe.refund", "result_id": "res_1"}
        ]
        assert esc.evidence["rule"] == "x"
        assert not job.incident


def test_before_execution_earlier_writes_do_not_make_a_stop_partial(
    new_job: Callable[..., str],
) -> None:
    job_id = new_job()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        add_step(session, job, 0, "stripe.refund", StepStatus.SUCCEEDED)

        esc = escalate(session, job, "policy_blocked", "plan")

        assert esc.reason == "policy_blocked" and "completed_steps" not in esc.evidence


def test_a_failed_read_back_of_the_only_write_is_an_incident_not_a_partial_plan(
    new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    job_id = new_job()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        walk(session, job, lifecycle.PLANNED, lifecycle.READY, lifecycle.EXECUTED)
        add_step(session, job, 0, "stripe.refund", StepStatus.SUCCEEDED)
        job.current_step = 0

        esc = escalate(session, job, "outcome_mismatch", "verify_outcome")

        assert esc.reason == "outcome_mismatch"
        assert job.incident


def test_a_failed_read_back_after_earlier_writes_is_partial_and_still_an_incident(
    new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    job_id = new_job()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        walk(session, job, lifecycle.PLANNED, lifecycle.READY, lifecycle.EXECUTED)
        add_step(session, job, 0, "stripe.refund", StepStatus.SUCCEEDED)
        add_step(session, job, 1, "zendesk.add_comment", StepStatus.SUCCEEDED)
        job.current_step = 1

        esc = escalate(session, job, "outcome_mismatch", "verify_outcome")

        assert esc.reason == "partial"
        assert esc.evidence["original_reason"] == "outcome_mismatch"
        assert [s["step"] for s in esc.evidence["completed_steps"]] == ["s1"]
        assert job.incident


def test_mark_notified_stamps_each_open_escalation_of_the_job_once(
    new_job: Callable[..., str],
) -> None:
    first, other = new_job(), new_job()
    with session_scope() as session:
        for job_id in (first, other):
            job = session.get(Job, job_id)
            assert job is not None
            escalate(session, job, "verification_failed", "verify")
        session.commit()

    with session_scope() as session:
        stamped = escalation.mark_notified(session, first)
        session.commit()
        assert [e.job_id for e in stamped] == [first]
        assert all(e.notified_at is not None for e in stamped)

    with session_scope() as session:
        assert escalation.mark_notified(session, first) == []
        untouched = session.query(Escalation).filter_by(job_id=other).one()
        assert untouched.notified_at is None
