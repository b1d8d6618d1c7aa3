"""The stage harness on the embedded SQLite: duplicates are dropped, loops dead-letter."""

from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.intake import submissions
from app.jobs import lifecycle
from app.models import Job
from app.stages import runner
from app.stages.plan import PlanStage
from tests.support.env import reset_process_state


def _job() -> str:
    sub = submissions.parse_submission(
        {"workflow": "support_refund", "external_id": "4821", "input": {"ticket_id": 4821}}
    )
    with session_scope() as s:
        job, _ = submissions.accept(s, sub, submitted_by="test")
        s.commit()
        return job.id


def test_a_message_for_a_job_that_moved_on_is_skipped(sqlite_db):
    job_id = _job()
    with session_scope() as s:
        lifecycle.transition(s, s.get(Job, job_id), lifecycle.CANCELLED, actor="test")
        s.commit()
    assert runner.run_stage(PlanStage(), job_id) == "skipped"
    assert runner.run_stage(PlanStage(), "no-such-job") == "unknown"


def test_a_message_delivered_too_often_dead_letters_the_job(sqlite_db, monkeypatch):
    monkeypatch.setenv("OPSGATE_MAX_DELIVERIES", "2")
    reset_process_state()
    job_id = _job()
    with session_scope() as s:
        s.get(Job, job_id).stage_deliveries = 2  # two deliveries that never finished
        s.commit()
    assert runner.run_stage(PlanStage(), job_id) == "dead_letter"
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.status == lifecycle.FAILED
        assert job.status_reason == "dead_letter: plan delivered 3 times"
        assert job.resume_status == lifecycle.QUEUED  # an operator retry starts over from here


@pytest.mark.parametrize("deliveries", [0, 1])
def test_deliveries_under_the_limit_are_counted(sqlite_db, monkeypatch, deliveries):
    monkeypatch.setenv("OPSGATE_MAX_DELIVERIES", "2")
    monkeypatch.setenv("OPSGATE_ZENDESK_API_BASE", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("OPSGATE_REDIS_URL", "redis://127.0.0.1:9/0")  # breaker: reads go ahead
    reset_process_state()
    job_id = _job()
    with session_scope() as s:
        s.get(Job, job_id).stage_deliveries = deliveries
        s.commit()
    from app.errors import RetryableError

    with pytest.raises(RetryableError):
        runner.run_stage(PlanStage(), job_id)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.stage_deliveries, job.retries) == (
            lifecycle.QUEUED,
            deliveries + 1,
            1,
        )
