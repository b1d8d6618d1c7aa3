"""The job state machine: the allowed transitions, and the one function that makes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.exc import StaleDataError

from app.audit import chain
from app.core.redaction import redact
from app.errors import IllegalTransition, StaleJob
from app.models import Job, utcnow

QUEUED = "queued"  # waiting for the planner
PLANNED = "planned"  # plan stored, waiting for proposal verification
READY = "ready"  # verified, current step waiting for the executor
EXECUTED = "executed"  # current step written, waiting for its read-back
COMPLETED = "completed"
ESCALATED = "escalated"  # in the human queue
REJECTED = "rejected"
FAILED = "failed"
PAUSED = "paused"  # parked (kill switch, open breaker); resumes by itself
CANCELLED = "cancelled"

TERMINAL = frozenset({COMPLETED, REJECTED, FAILED, CANCELLED})
ACTIVE = frozenset({QUEUED, PLANNED, READY, EXECUTED})
PARKED_OR_STOPPED = frozenset({PAUSED, ESCALATED, FAILED})

_ANY_ACTIVE_EXIT = {ESCALATED, FAILED, CANCELLED, PAUSED}

TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({PLANNED} | _ANY_ACTIVE_EXIT),
    PLANNED: frozenset({READY} | _ANY_ACTIVE_EXIT),
    READY: frozenset({EXECUTED} | _ANY_ACTIVE_EXIT),
    EXECUTED: frozenset({READY, COMPLETED} | _ANY_ACTIVE_EXIT),
    ESCALATED: frozenset(ACTIVE | {REJECTED, CANCELLED, FAILED}),
    PAUSED: frozenset(ACTIVE | {ESCALATED, CANCELLED, FAILED}),
    FAILED: frozenset(ACTIVE),  # `opsgate jobs retry`
    COMPLETED: frozenset(),
    REJECTED: frozenset(),
    CANCELLED: frozenset(),
}


@dataclass(frozen=True)
class Message:
    """A stage message a transaction just wrote (on its job row), as the publisher needs it."""

    job_id: str
    task: str
    queue: str


@dataclass(frozen=True)
class Stage:
    """The Celery task (and its queue) that works on jobs in one status."""

    task: str
    queue: str


STAGES: dict[str, Stage] = {
    QUEUED: Stage("opsgate.plan", "plan"),
    PLANNED: Stage("opsgate.verify_proposal", "verify"),
    READY: Stage("opsgate.execute", "execute"),
    EXECUTED: Stage("opsgate.verify_outcome", "verify"),
    ESCALATED: Stage("opsgate.notify_human", "human"),
}


# session.info key: the stage messages written in the session's transaction, to send after it
# commits.
WRITTEN = "opsgate.outbox"

# Every queue the fleet consumes: one per stage group, plus beat's maintenance work.
QUEUES = ("plan", "verify", "execute", "human", "maintenance")


def _forget_written(session: Session, previous: SessionTransaction) -> None:
    if previous.parent is None:  # the whole transaction, not a savepoint
        session.info.pop(WRITTEN, None)


# Messages are sent only for what committed: a rollback of the whole transaction forgets them
# (the relay sends whatever is still due on the job rows). A savepoint's rollback does not: the
# messages written before it still commit (the model spend ledger's insert race runs in a
# savepoint inside the commit), and a message whose transition a savepoint undid finds the job
# in another status and is skipped.
event.listen(Session, "after_soft_rollback", _forget_written)


def advanced_elsewhere(exc: Exception) -> bool:
    """Whether a flush failed because another writer moved the job first: its versioned UPDATE
    matched no row, or the job's audit chain already has the events' sequence numbers (the
    flush may write those before the job's UPDATE)."""
    if isinstance(exc, StaleDataError):
        return True
    return isinstance(exc, IntegrityError) and "audit_events" in str(exc.orig)


def can_transition(from_status: str, to_status: str) -> bool:
    """Whether the state machine links the two statuses."""
    return to_status in TRANSITIONS.get(from_status, frozenset())


def enqueue_stage(session: Session, job: Job) -> Stage | None:
    """Write the message for the stage that works on the job's current status: due now, on the
    job row itself (it goes out in the job's UPDATE), sent right after the commit."""
    stage = STAGES.get(job.status)
    job.message_due_at = utcnow() if stage is not None else None
    if stage is None:
        return None
    # Remembered for the send right after the commit (app.jobs.outbox.send_written).
    session.info.setdefault(WRITTEN, []).append((job.id, stage.task, stage.queue))
    return stage


def transition(
    session: Session,
    job: Job,
    to_status: str,
    *,
    actor: str,
    reason: str | None = None,
    resume_at: datetime | None = None,
) -> None:
    """Move the job, record the audit entry (the `job_events` view shows it as history), and
    queue the next stage's message.

    The caller commits; publishing happens only after that commit (see app.jobs.outbox).
    """
    from_status, job_id = job.status, job.id
    if not can_transition(from_status, to_status):
        raise IllegalTransition(f"job {job_id}: {from_status} -> {to_status} is not allowed")
    if from_status in ACTIVE and to_status in PARKED_OR_STOPPED:
        job.resume_status = from_status  # where `resume` or `retry` picks the job up again
    if to_status not in ACTIVE or from_status in ACTIVE:
        job.parked_since = job.parked_since if to_status == PAUSED else None
    job.status = to_status
    job.status_reason = reason
    job.stage_deliveries = 0
    job.resume_at = resume_at
    job.updated_at = utcnow()
    # The chained event is also the readable history: `job_events` is a view of these.
    chain.append(
        session,
        job.id,
        "transition",
        actor,
        # Free text (a plan's summary, an escalation's detail) is redacted before it is
        # chained: personal data must stay erasable, and a chained payload never is.
        {"from": from_status, "to": to_status, "reason": redact(reason) if reason else reason},
    )
    enqueue_stage(session, job)
    # One flush for the job's versioned UPDATE and the rows above (a stale job fails here, and
    # the transaction with them).
    try:
        session.flush()
    except (StaleDataError, IntegrityError) as exc:
        if not advanced_elsewhere(exc):
            raise
        raise StaleJob(f"job {job_id} was advanced by another worker") from exc
