"""Publishing committed stage messages to Celery (transactional outbox relay).

A stage message is an outbox row written in the transaction that moved the job. Right after
that commit the writer sends the messages it wrote from memory (`send`), with no database work;
the row stays pending until the stage that takes the message marks it consumed in the
transaction it opens anyway (`consumed`). A row still pending after the grace period (the
writer died between its commit and the send, or the broker refused it) is sent again by the
relay, and marked. So a message is never lost, and is sent twice only when it waited longer
than the grace period to be taken (the stages skip a duplicate with one statement).
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.jobs import lifecycle
from app.jobs.celery_config import publisher
from app.models import OutboxMessage, utcnow

log = structlog.get_logger(__name__)

_BATCH = 500


def send_written(session: Session) -> int:
    """After the commit: send the messages this session's transaction wrote, from memory."""
    written: list[tuple[str, str, str]] = session.info.pop(lifecycle.WRITTEN, [])
    app = publisher()
    sent = 0
    for job_id, task, queue in written:
        try:
            app.send_task(task, args=[job_id], queue=queue)
        except (KombuOperationalError, RedisError, OSError) as exc:
            # The broker is down: the row stays pending and the relay sends it later.
            log.warning("outbox.publish_failed", job_id=job_id, task=task, error=str(exc))
            break
        sent += 1
    return sent


def consumed(session: Session, job_id: str) -> None:
    """Mark the job's pending messages taken (in the transaction of the stage that took one)."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.job_id == job_id, OutboxMessage.published_at.is_(None))
        .values(published_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _publish(rows: list[OutboxMessage]) -> int:
    app = publisher()
    sent = 0
    for row in rows:
        row.attempts += 1
        try:
            app.send_task(row.task, args=[row.job_id], queue=row.queue)
        except (KombuOperationalError, RedisError, OSError) as exc:
            # The broker is down: the message stays pending and the relay sends it later.
            log.warning("outbox.publish_failed", job_id=row.job_id, task=row.task, error=str(exc))
            break
        row.published_at = utcnow()
        sent += 1
    return sent


def publish_for_job(job_id: str) -> int:
    """Publish a job's pending messages right after the transaction that wrote them."""
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.job_id == job_id, OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .with_for_update(skip_locked=True)
            )
        )
        sent = _publish(rows)
        session.commit()
    return sent


def relay(grace_seconds: float) -> int:
    """Publish every message still pending after the grace period (run by beat)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    total = 0
    while True:
        with session_scope() as session:
            rows = list(
                session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None), OutboxMessage.created_at <= cutoff)
                    .order_by(OutboxMessage.id)
                    .limit(_BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            sent = _publish(rows)
            session.commit()
        total += sent
        if sent < _BATCH:
            return total
