"""What every stage task shares: run the stage, retry transient errors with backoff."""

from __future__ import annotations

import random

from celery import Task

from app.errors import RetryableError
from app.settings import get_settings
from app.stages import runner

MAX_COUNTDOWN = 60.0


def backoff(retries: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, honoring Retry-After, capped far below the
    broker's visibility timeout so a killed worker's message comes back quickly."""
    if retry_after is not None:
        return min(MAX_COUNTDOWN, max(0.0, retry_after))
    return random.uniform(0, min(MAX_COUNTDOWN, 0.5 * 2**retries))


def run(task: Task, stage: runner.StageWork, job_id: str) -> str:
    """Run one delivery of a stage.

    Retries are explicit (not `autoretry_for`) so the countdown can honor the downstream's
    Retry-After; once they are exhausted the job escalates instead of failing silently.
    """
    try:
        return runner.run_stage(stage, job_id)
    except RetryableError as exc:
        if task.request.retries >= get_settings().retry_max:
            runner.give_up(stage.name, job_id, exc)
            return "escalated"
        raise task.retry(
            exc=exc, countdown=backoff(task.request.retries, exc.retry_after), max_retries=None
        ) from exc
