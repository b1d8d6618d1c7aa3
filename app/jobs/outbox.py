"""Publishing committed stage messages to Celery (transactional outbox relay)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy import select

from app.core.db import session_scope
from app.jobs.celery_config import publisher
from app.models import OutboxMessage, utcnow

log = structlog.get_logger(__name__)

_BATCH = 500


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


@dataclass(frozen=True)
class Message:
    """A stage message a transaction just wrote to the outbox, as the publisher needs it."""

    job_id: str
    task: str
    queue: str


def send_after_commit(messages: Iterable[Message]) -> int:
    """Send messages whose outbox rows just committed, with no database work at all.

    The rows keep `published_at` NULL: the consuming stage marks them, or the relay sends
    them again after `outbox_grace` (a duplicate message is harmless: stages skip a message
    for a job that moved on). So a crash or a broker outage between the commit and this
    send loses nothing, and the accept path pays no second transaction.
    """
    app = publisher()
    sent = 0
    for msg in messages:
        try:
            app.send_task(msg.task, args=[msg.job_id], queue=msg.queue)
        except (KombuOperationalError, RedisError, OSError) as exc:
            # The broker is down: the relay sends the rest after the grace period.
            log.warning("outbox.send_failed", job_id=msg.job_id, task=msg.task, error=str(exc))
            break
        sent += 1
    return sent
