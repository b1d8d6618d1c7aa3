"""Task on the `plan` queue."""

from __future__ import annotations

from celery import Task

from app.celery_app import celery_app
from app.stages.plan import PlanStage
from tasks.base import run

_STAGE = PlanStage()


@celery_app.task(name="opsgate.plan", bind=True)
def plan(self: Task, job_id: str) -> str:
    """Plan a queued job."""
    return run(self, _STAGE, job_id)
