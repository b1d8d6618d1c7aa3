"""Nothing stays stuck: pending outbox messages are relayed, stalled jobs are nudged."""

from __future__ import annotations

from datetime import timedelta

import redis
import structlog
from sqlalchemy import select, update

from app.controls import killswitch
from app.core.db import session_scope
from app.errors import StaleJob
from app.human import decisions
from app.jobs import lifecycle, outbox
from app.models import Job, utcnow
from app.settings import get_settings

log = structlog.get_logger(__name__)


def nudge_stale(stale_after: float) -> int:
    """Queue the stage message again for jobs that made no progress for `stale_after` seconds.

    A worker killed mid-task, or a message lost with a Redis restart, leaves the job in an
    active status; the stage tasks are idempotent, so sending the message again is safe.
    """
    cutoff = utcnow() - timedelta(seconds=stale_after)
    nudged = 0
    with session_scope() as session:
        stale = session.scalars(
            select(Job.id)
            .where(
                Job.status.in_(lifecycle.ACTIVE),
                Job.updated_at < cutoff,
                Job.message_due_at.is_(None),
            )
            .limit(500)
        ).all()
        if stale:
            # Plain UPDATE: a nudge is not progress and must not bump the job's version. The
            # message is due again now, and the relay that follows sends it.
            now = utcnow()
            session.execute(
                update(Job)
                .where(Job.id.in_(stale))
                .values(message_due_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        nudged = len(stale)
        session.commit()
    if nudged:
        log.warning("reaper.nudged", jobs=nudged)
    return nudged


def resume_due() -> int:
    """Send parked jobs whose wait is over back to the stage they were parked in."""
    resumed = 0
    with session_scope() as session:
        due = session.scalars(
            select(Job)
            .where(
                Job.status == lifecycle.PAUSED,
                Job.resume_at.is_not(None),
                Job.resume_at <= utcnow(),
            )
            .limit(500)
        ).all()
        for job in due:
            if job.resume_status not in lifecycle.ACTIVE:
                continue
            try:
                with session.begin_nested():
                    lifecycle.transition(
                        session, job, job.resume_status, actor="system:reaper", reason="wait over"
                    )
            except StaleJob:
                continue
            resumed += 1
        session.commit()
    return resumed


def resume_released() -> int:
    """Send jobs parked by a kill switch back to work once their switch is released."""
    try:
        with session_scope() as session:
            resumed = killswitch.resume_released(session, actor="system:reaper")
            session.commit()
    except (redis.RedisError, OSError) as exc:
        log.warning("reaper.killswitch_unreadable", error=str(exc))
        return 0
    for job_id in resumed:
        outbox.publish_for_job(job_id)
    return len(resumed)


def expire_escalations() -> int:
    """Approvals nobody gave in time: the escalation expires and the action is not taken."""

    with session_scope() as session:
        expired = decisions.expire_overdue(session)
        session.commit()
    for job_id in expired:
        outbox.publish_for_job(job_id)
    if expired:
        log.warning("reaper.escalations_expired", jobs=len(expired))
    return len(expired)


def reap() -> dict[str, int]:
    """One pass of the reaper."""
    settings = get_settings()
    expire_escalations()
    resumed = resume_due() + resume_released()
    nudged = nudge_stale(settings.stale_after)
    relayed = outbox.relay(settings.outbox_grace if not (nudged or resumed) else 0.0)
    return {"resumed": resumed, "nudged": nudged, "relayed": relayed}
