"""What every stage task shares: run the stage, retry transient errors with backoff."""

from __future__ import annotations

import random

from celery import Task
from celery.exceptions import Retry

from app.core import db
from app.errors import RetryableError
from app.settings import get_settings
from app.stages import runner

MAX_COUNTDOWN = 60.0
# How many times this message already came back because the database was unavailable: it sets
# the backoff of the next attempt, and is kept apart from Celery's own retry count, which
# counts the downstream retries that `retry_max` limits.
DB_RETRIES_HEADER = "opsgate_db_retries"


def backoff(retries: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, honoring Retry-After, capped far below the
    broker's visibility timeout so a killed worker's message comes back quickly."""
    if retry_after is not None:
        return min(MAX_COUNTDOWN, max(0.0, retry_after))
    return random.uniform(0, min(MAX_COUNTDOWN, 0.5 * 2**retries))


def run(task: Task, stage: runner.StageWork, job_id: str) -> str:
    """Run one delivery of a stage.

    Retries are explicit (not `autoretry_for`) so the countdown can honor the downstream's
    Retry-After; once they are exhausted the job escalates instead of failing silently. A
    database that cannot be reached is waited out: the message comes back with backoff.
    """
    try:
        return _run(task, stage, job_id)
    except Exception as exc:
        if not db.transient(exc):
            raise
        raise _after_database_outage(task, exc) from exc


def _run(task: Task, stage: runner.StageWork, job_id: str) -> str:
    settings = get_settings()
    try:
        return runner.run_stage(stage, job_id)
    except RetryableError as exc:
        if task.request.retries >= settings.retry_max:
            runner.give_up(stage.name, job_id, exc)
            return "escalated"
        # Explicit: `max_retries=None` would mean Celery's default of 3, which drops the
        # message (the task fails) before `retry_max` can escalate the job.
        raise task.retry(
            exc=exc,
            countdown=backoff(task.request.retries, exc.retry_after),
            max_retries=settings.retry_max,
        ) from exc


def _after_database_outage(task: Task, exc: Exception) -> Retry:
    """Send the same message again with backoff, without spending a downstream retry.

    Never escalates and has no limit: escalating needs the database too, and the stages are
    idempotent (a commit whose answer was lost is seen as done on the next delivery). Once the
    database answers, each delivery counts against `max_deliveries`.
    """
    headers = dict(task.request.headers or {})
    attempts = int(headers.get(DB_RETRIES_HEADER) or 0)
    countdown = backoff(attempts, None)
    headers[DB_RETRIES_HEADER] = attempts + 1
    # Celery's task.retry would count this as a downstream retry; the same signature with
    # the retry count unchanged does not.
    again = task.signature_from_request(
        task.request, countdown=countdown, retries=task.request.retries, headers=headers
    )
    again.apply_async()
    return Retry(exc=exc, when=countdown)
