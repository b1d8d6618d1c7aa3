"""Tasks on the `verify` queue: the proposal before the write, the outcome after it."""

from __future__ import annotations

from celery import Task

from app.celery_app import celery_app
from app.stages.verify_outcome import VerifyOutcomeStage
from app.stages.verify_proposal import VerifyProposalStage
from tasks.base import run

_PROPOSAL = VerifyProposalStage()
_OUTCOME = VerifyOutcomeStage()


@celery_app.task(name="opsgate.verify_proposal", bind=True)
def verify_proposal(self: Task, job_id: str) -> str:
    """Verify a planned job's proposal."""
    return run(self, _PROPOSAL, job_id)


@celery_app.task(name="opsgate.verify_outcome", bind=True)
def verify_outcome(self: Task, job_id: str) -> str:
    """Read back and confirm the step just written."""
    return run(self, _OUTCOME, job_id)
