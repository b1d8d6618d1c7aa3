"""Tasks on the `maintenance` queue, run by beat: the outbox relay and the stale-job reaper,
the audit checkpoint, the personal-data retention purge and the reviewers' notifications."""

from __future__ import annotations

from datetime import timedelta

from app.audit import checkpoints
from app.celery_app import celery_app
from app.core.db import session_scope
from app.human import notifications
from app.privacy import erasure
from app.settings import get_settings
from app.stages import reaper


@celery_app.task(name="opsgate.reap")
def reap() -> dict[str, int]:
    """Publish pending outbox messages and re-publish jobs stuck in an active state."""
    return reaper.reap()


@celery_app.task(name="opsgate.audit_checkpoint")
def audit_checkpoint() -> int:
    """Anchor the job chains whose head moved; returns the checkpoint's seq (0: none)."""
    with session_scope() as session:
        point = checkpoints.take(session)
        session.commit()
        return point.seq if point is not None else 0


@celery_app.task(name="opsgate.retention_purge")
def retention_purge() -> int:
    """Scrub personal data older than OPSGATE_RETENTION_DAYS; returns the rows scrubbed."""
    days = get_settings().retention_days
    with session_scope() as session:
        result = erasure.purge_expired(
            session, older_than=timedelta(days=days), actor="system:retention"
        )
        session.commit()
        return result.total()


@celery_app.task(name="opsgate.notify_reviewers")
def notify_reviewers() -> dict[str, int]:
    """Queue reminders for escalations near their deadline and post what is due."""
    return notifications.run_due()
