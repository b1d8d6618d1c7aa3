"""The stage harness: count the delivery, do the I/O outside any transaction, then commit.

Every stage follows the same three steps so no stage can forget one:
1. a short transaction that checks the job is in the stage's status and counts the delivery
   (past the limit the job is dead-lettered, never looped);
2. the stage's work: downstream reads and writes, with no database transaction open;
3. a transaction that re-reads the job at the version seen in step 1 (a racing worker that
   got there first wins, this one drops out), records the calls and applies the result.
Publishing the next stage happens only after that commit (app.jobs.outbox).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.controls import killswitch
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.errors import (
    EscalationRequired,
    KillSwitchEngaged,
    Parked,
    PermanentError,
    RateLimited,
    RetryableError,
    StaleJob,
)
from app.human import escalation
from app.jobs import lifecycle, outbox
from app.models import Job, as_utc, utcnow
from app.settings import get_settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class JobView:
    """A plain snapshot of a job, safe to use outside the session that read it."""

    id: str
    workflow: str
    input: dict[str, Any]
    requester: str
    version: int
    current_step: int
    deliveries: int


class StageWork(Protocol):
    """What a stage provides to the harness."""

    name: str
    status: str

    def prepare(self, session: Session, job: Job) -> Any:
        """Inside the first transaction: read what the work needs (and claim it)."""

    def work(self, job: JobView, ctx: Any, rec: CallRecorder) -> Any:
        """The I/O, outside any transaction."""

    def apply(self, session: Session, job: Job, ctx: Any, result: Any) -> None:
        """Inside the second transaction: store the result and transition."""


def agent_actor() -> str:
    return f"agent:{get_settings().agent_identity}"


def run_stage(stage: StageWork, job_id: str) -> str:
    """Run one delivery of a stage message; returns what happened (for logs and tests)."""
    settings = get_settings()
    with session_scope() as session:
        # One statement takes the message: count the delivery (a plain UPDATE outside the
        # ORM's version counter, so counting must not make a concurrent worker's result look
        # stale) and load the job, only while it is in this stage's status.
        job = session.scalars(
            update(Job)
            .where(Job.id == job_id, Job.status == stage.status)
            # ... and mark its message taken (the job row is the outbox: app.jobs.outbox).
            .values(stage_deliveries=Job.stage_deliveries + 1, message_due_at=None)
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True)
        ).one_or_none()
        if job is None:
            # A duplicate or late message (the job already moved on), or no such job.
            exists = session.scalar(select(Job.status).where(Job.id == job_id))
            if exists is None:
                log.warning("stage.unknown_job", stage=stage.name, job_id=job_id)
                return "unknown"
            return "skipped"
        deliveries = job.stage_deliveries
        if deliveries > settings.max_deliveries:
            session.refresh(job)
            lifecycle.transition(
                session,
                job,
                lifecycle.FAILED,
                actor=agent_actor(),
                reason=f"dead_letter: {stage.name} delivered {deliveries} times",
            )
            session.commit()
            log.error("stage.dead_letter", stage=stage.name, job_id=job_id, deliveries=deliveries)
            return "dead_letter"
        ctx = stage.prepare(session, job)
        # The plan's steps are what the stage's claim and work change; the second transaction
        # reads them again if it needs them, never this transaction's copies.
        session.expire(job, ["steps"])
        snapshot = job
        view = JobView(
            job.id,
            job.workflow,
            dict(job.input),
            job.requester,
            job.version,
            job.current_step,
            deliveries,
        )
        session.commit()

    rec = CallRecorder(stage=stage.name, workflow=view.workflow)
    try:
        result = stage.work(view, ctx, rec)
    except EscalationRequired as exc:
        # A claimed step goes back (same key): an approval or a retry takes it up at once.
        _abandon(stage, ctx)
        return _finish(
            view, None, rec, _escalator(stage.name, exc.reason, exc.detail, exc.evidence)
        )
    except PermanentError as exc:
        _abandon(stage, ctx)
        return _finish(
            view,
            None,
            rec,
            _escalator(stage.name, "tool_error", str(exc), {"kind": "permanent_error"}),
        )
    except Parked as exc:
        _abandon(stage, ctx)
        return _finish(view, None, rec, _parker(stage.name, exc))
    except RetryableError as exc:
        _abandon(stage, ctx)
        if _spend_retry(view, rec) > settings.retry_budget:
            detail = f"retry budget of {settings.retry_budget} spent; last error: {exc}"
            return _finish(
                view,
                None,
                rec,
                _escalator(
                    stage.name,
                    "tool_error",
                    detail,
                    {"kind": "retries_exhausted", "error": exc.__class__.__name__},
                ),
            )
        raise
    except Exception:
        _abandon(stage, ctx)
        _record_calls(view, rec)
        raise
    return _finish(view, snapshot, rec, lambda s, j: stage.apply(s, j, ctx, result))


def _abandon(stage: StageWork, ctx: Any) -> None:
    """Let a stage release what `prepare` claimed when its work stops early (an optional
    `abandon(session, ctx)` method: the executor gives its step claim back)."""
    abandon = getattr(stage, "abandon", None)
    if abandon is None:
        return
    with session_scope() as session:
        abandon(session, ctx)
        session.commit()


def _spend_retry(view: JobView, rec: CallRecorder) -> int:
    """Record this attempt's calls and count one retry against the job's budget."""
    with session_scope() as session:
        rec.write(session, view.id, attempt=view.deliveries, requester=view.requester)
        session.execute(update(Job).where(Job.id == view.id).values(retries=Job.retries + 1))
        spent = session.scalar(select(Job.retries).where(Job.id == view.id)) or 0
        session.commit()
    return int(spent)


def _parker(stage: str, exc: Parked) -> Any:
    """Park the job until the breaker lets calls through, or escalate if it waited too long."""

    def apply(session: Session, job: Job) -> None:
        if isinstance(exc, KillSwitchEngaged):
            # Parking is not an escalation: the job waits, however long, for the release
            # (app.controls.killswitch.resume_released), with no resume_at to poll.
            lifecycle.transition(
                session,
                job,
                lifecycle.PAUSED,
                actor=agent_actor(),
                reason=f"{killswitch.REASON_PREFIX}{exc.scope} {exc.why}",
            )
            return
        now = utcnow()
        since = as_utc(job.parked_since) or now
        waited = (now - since).total_seconds()
        limit = get_settings().breaker_max_wait
        if waited > limit:
            escalation.escalate(
                session,
                job,
                reason="circuit_open",
                detail=f"{exc.system} refused calls for {waited:.0f}s "
                f"(limit {limit:.0f}s): {exc.why}",
                evidence={"system": exc.system, "waited_seconds": round(waited)},
                stage=stage,
                actor=agent_actor(),
            )
            return
        resume = datetime.fromtimestamp(exc.retry_at, UTC) + timedelta(seconds=random.uniform(0, 1))
        job.parked_since = since
        kind = "rate_limited" if isinstance(exc, RateLimited) else "circuit_open"
        lifecycle.transition(
            session,
            job,
            lifecycle.PAUSED,
            actor=agent_actor(),
            reason=f"{kind}: {exc.system}: {exc.why}",
            resume_at=resume,
        )

    return apply


def _escalator(stage: str, reason: str, detail: str, evidence: dict[str, Any]) -> Any:
    def apply(session: Session, job: Job) -> None:
        escalation.escalate(
            session,
            job,
            reason=reason,
            detail=detail,
            evidence=evidence,
            stage=stage,
            actor=agent_actor(),
        )

    return apply


def _finish(view: JobView, snapshot: Job | None, rec: CallRecorder, apply: Any) -> str:
    """The second transaction: record the calls, apply the result, commit, send the message.

    `snapshot` is the job as the first transaction left it, attached without reading it again
    when nothing was written since (the stage's work succeeded): the versioned UPDATE of the
    transition is the check that no other worker advanced the job meanwhile. After an early
    stop (a claim given back, a retry counted and its calls recorded, which moves the job's
    audit head) the job is read again and its version compared.
    """
    try:
        with session_scope() as session:
            if snapshot is not None:
                job = session.merge(snapshot, load=False)
            else:
                found = session.get(Job, view.id)
                if found is None or found.version != view.version:
                    raise StaleJob(f"job {view.id} changed while this stage worked")
                job = found
            rec.write(session, view.id, attempt=view.deliveries, requester=view.requester)
            apply(session, job)
            try:
                session.commit()
            except (StaleDataError, IntegrityError) as exc:
                if not lifecycle.advanced_elsewhere(exc):
                    raise
                raise StaleJob(f"job {view.id} changed while this stage worked") from exc
            status = job.status
            outbox.send_written(session)
    except StaleJob:
        log.info("stage.stale", job_id=view.id)
        return "stale"
    return status


def _record_calls(view: JobView, rec: CallRecorder) -> None:
    """Keep the calls of an attempt that will be retried (they happened, they are evidence)."""
    if not rec.calls:
        return
    with session_scope() as session:
        rec.write(session, view.id, attempt=view.deliveries, requester=view.requester)
        session.commit()


def give_up(stage_name: str, job_id: str, error: Exception) -> None:
    """Retries are exhausted: escalate the job with the last error."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status in lifecycle.TERMINAL or job.status == lifecycle.ESCALATED:
            return
        escalation.escalate(
            session,
            job,
            reason="tool_error",
            detail=str(error),
            evidence={"kind": "retries_exhausted", "error": error.__class__.__name__},
            stage=stage_name,
            actor=agent_actor(),
        )
        session.commit()
    outbox.publish_for_job(job_id)
