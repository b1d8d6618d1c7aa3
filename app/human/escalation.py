"""Handing a job to the human queue, with its reason and evidence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app import reasons
from app.audit import chain
from app.core.redaction import redact
from app.human import notifications
from app.jobs import lifecycle
from app.models import Escalation, EscalationStatus, Job, StepStatus, utcnow
from app.settings import get_settings
from tools.base import Risk
from tools.catalog import get_tool

# Escalations a reviewer approves (an action that needs a yes, a shadow-mode proposal, a
# plan the soft check doubted): they carry a decision deadline, after which they expire and
# the action is not taken.
APPROVABLE = frozenset({"approval_required", "shadow_proposal", "low_confidence"})

# Stages after which an already-written step makes any stop a partial plan.
_WRITE_STAGES = {"execute", "verify_outcome"}


def completed_writes(job: Job, *, unconfirmed: int | None = None) -> list[dict[str, Any]]:
    """The plan's steps that already changed a downstream system (confirmed ones: the step
    at position `unconfirmed`, whose read-back is what failed, is not one of them)."""
    return [
        {"step": s.step_id, "tool": s.tool, "result_id": (s.result or {}).get("id")}
        for s in job.steps
        if s.status == StepStatus.SUCCEEDED
        and get_tool(s.tool).risk is not Risk.READ
        and s.position != unconfirmed
    ]


def escalate(
    session: Session,
    job: Job,
    *,
    reason: str,
    detail: str,
    evidence: dict[str, Any],
    stage: str,
    actor: str,
) -> Escalation:
    """Open an escalation and move the job to the human queue (the caller commits).

    Partial plans are never rolled back silently: when earlier steps already wrote, the
    escalation says `partial` and lists them, keeping the original reason in the evidence.
    """
    reasons.check(reason)
    # At verify_outcome the current step ran but its read-back failed: it is the subject of
    # the escalation, not an earlier write that makes the stop partial.
    current = job.current_step if stage == "verify_outcome" else None
    done = completed_writes(job, unconfirmed=current) if stage in _WRITE_STAGES else []
    if done:
        evidence = dict(evidence, original_reason=reason, completed_steps=done)
        reason = "partial"
    if reason == "outcome_mismatch" or evidence.get("original_reason") == "outcome_mismatch":
        # A write happened and the system does not show it as intended: an incident for ops,
        # not only a case for a reviewer.
        job.incident = True
    esc = Escalation(job_id=job.id, reason=reason, detail=detail, evidence=evidence, stage=stage)
    if reason in APPROVABLE:
        esc.deadline = utcnow() + timedelta(seconds=get_settings().decision_deadline)
    session.add(esc)
    # In this transaction, so the message is due exactly when the escalation exists.
    notifications.on_opened(session, esc)
    lifecycle.transition(
        session, job, lifecycle.ESCALATED, actor=actor, reason=f"{reason}: {detail}"
    )
    chain.append(
        session,
        job.id,
        "escalation",
        actor,
        {
            "reason": reason,
            "detail": redact(detail),
            "stage": stage,
            "evidence_keys": sorted(evidence),
        },
    )
    return esc


def mark_notified(session: Session, job_id: str) -> list[Escalation]:
    """Stamp the job's open, un-notified escalations as delivered to the human queue."""
    found = (
        session.query(Escalation)
        .filter(
            Escalation.job_id == job_id,
            Escalation.status == EscalationStatus.OPEN,
            Escalation.notified_at.is_(None),
        )
        .all()
    )
    for esc in found:
        esc.notified_at = utcnow()
    return found
