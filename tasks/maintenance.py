"""Task on the `maintenance` queue, run by beat: the outbox relay and the stale-job reaper."""

from __future__ import annotations

from app import reaper
from app.celery_app import celery_app


@celery_app.task(name="opsgate.reap")
def reap() -> dict[str, int]:
    """Publish pending outbox messages and re-publish jobs stuck in an active state."""
    return reaper.reap()
