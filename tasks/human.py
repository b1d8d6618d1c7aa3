"""Task on the `human` queue: deliver an escalation to the reviewers."""

from __future__ import annotations

import structlog

from app.celery_app import celery_app
from app.core.db import session_scope
from app.human import notifications
from app.human.escalation import mark_notified
from app.jobs import outbox

log = structlog.get_logger(__name__)


@celery_app.task(name="opsgate.notify_human")
def notify_human(job_id: str) -> int:
    """Stamp the job's new escalations as delivered and announce them to the reviewers (the
    webhook messages go out after that commit; beat retries what fails)."""
    with session_scope() as session:
        outbox.taken(session, job_id)
        delivered = mark_notified(session, job_id)
        for esc in delivered:
            log.warning(
                "escalation.opened",
                job_id=job_id,
                escalation_id=esc.id,
                reason=esc.reason,
                detail=esc.detail,
            )
        session.commit()
    notifications.deliver(job_id=job_id)
    return len(delivered)
