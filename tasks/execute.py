"""Task on the `execute` queue."""

from __future__ import annotations

from celery import Task

from app.celery_app import celery_app
from app.stages.execute import ExecuteStage
from tasks.base import run

_STAGE = ExecuteStage()


@celery_app.task(name="opsgate.execute", bind=True)
def execute(self: Task, job_id: str) -> str:
    """Execute the current step of a ready job."""
    return run(self, _STAGE, job_id)
