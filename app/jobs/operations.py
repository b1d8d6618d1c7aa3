"""What operators do to a job by hand: cancel, retry, resume; each recorded with who did it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import reasons
from app.audit import chain
from app.errors import InputError
from app.jobs import lifecycle
from app.models import Escalation, EscalationStatus, Job, utcnow

RETRYABLE_REASONS = reasons.RETRYABLE
ACTIONS = ("cancel", "retry", "resume")


def _close_escalations(session: Session, job: Job, decision: str, actor: str, note: str) -> None:
    for esc in session.scalars(
        select(Escalation).where(
            Escalation.job_id == job.id, Escalation.status == EscalationStatus.OPEN
        )
    ):
        esc.status, esc.decision, esc.decided_by = "closed", decision, actor
        esc.decided_at, esc.note = utcnow(), note


def cancel(session: Session, job: Job, *, actor: str, reason: str) -> None:
    """Stop a job that has not finished; nothing more is written for it."""
    if job.status in lifecycle.TERMINAL:
        raise InputError(f"job {job.id} is already {job.status}")
    _close_escalations(session, job, "cancel", actor, reason)
    lifecycle.transition(
        session, job, lifecycle.CANCELLED, actor=actor, reason=f"cancelled: {reason}"
    )
    chain.append(session, job.id, "operator", actor, {"action": "cancel", "reason": reason})


def retry(session: Session, job: Job, *, actor: str) -> str:
    """Run a failed (or transiently escalated) job again from the stage where it stopped.

    The plan's steps keep their idempotency keys, so a write that did happen is replayed or
    found, never made twice.
    """
    latest = session.scalar(
        select(Escalation)
        .where(Escalation.job_id == job.id)
        .order_by(Escalation.id.desc())
        .limit(1)
    )
    if job.status == lifecycle.ESCALATED and (
        latest is None or latest.reason not in RETRYABLE_REASONS
    ):
        raise InputError(
            f"job {job.id} is escalated as {latest.reason if latest else 'unknown'}: "
            "a reviewer decides it, a retry cannot"
        )
    if job.status not in (lifecycle.FAILED, lifecycle.ESCALATED):
        raise InputError(f"job {job.id} is {job.status}; only failed or escalated jobs retry")
    target = job.resume_status if job.resume_status in lifecycle.ACTIVE else lifecycle.QUEUED
    _close_escalations(session, job, "retry", actor, "retried by an operator")
    job.retries = 0
    lifecycle.transition(session, job, target, actor=actor, reason="retried by an operator")
    chain.append(session, job.id, "operator", actor, {"action": "retry", "to": target})
    return target


def resume(session: Session, job: Job, *, actor: str) -> str:
    """Send a parked job back to its stage now, without waiting for its resume time."""
    if job.status != lifecycle.PAUSED:
        raise InputError(f"job {job.id} is {job.status}, not paused")
    target = job.resume_status if job.resume_status in lifecycle.ACTIVE else lifecycle.QUEUED
    lifecycle.transition(session, job, target, actor=actor, reason="resumed by an operator")
    chain.append(session, job.id, "operator", actor, {"action": "resume", "to": target})
    return target


def perform(session: Session, job: Job, action: str, *, actor: str, reason: str) -> str:
    """Apply one operator action (`ACTIONS`); returns the job's new status (the caller
    commits, then publishes)."""
    if action == "cancel":
        cancel(session, job, actor=actor, reason=reason)
        return lifecycle.CANCELLED
    if action == "retry":
        return retry(session, job, actor=actor)
    if action == "resume":
        return resume(session, job, actor=actor)
    raise InputError(f"unknown action {action!r}; use {', '.join(ACTIONS)}")
