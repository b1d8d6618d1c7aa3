"""Outages end to end: retry budgets, the breaker parking jobs, and operators taking over."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from app.controls import breaker
from app.core.db import session_scope
from app.intake import submissions
from app.jobs import lifecycle
from app.models import Escalation, Job
from tests.support.env import ROOT
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.integration

# The fleet as deployed: a beat-driven reaper re-publishes whatever stops moving.
RECOVERY = {"OPSGATE_REAPER_INTERVAL": "1", "OPSGATE_STALE_AFTER": "5"}


def submit(ticket: int, requester: int) -> str:
    job_id, _ = submissions.submit(
        {
            "workflow": "support_refund",
            "source": "zendesk",
            "external_id": str(ticket),
            "delivery_id": f"ops-{ticket}",
            "requester": f"zendesk-user:{requester}",
            "input": {"ticket_id": ticket},
        },
        submitted_by="test",
    )
    return job_id


def job(job_id: str) -> Job:
    with session_scope() as s:
        found = s.get(Job, job_id)
        assert found is not None
        return found


def opsgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_exhausted_retry_budget_escalates_and_an_operator_retry_finishes_once(
    pg_env, sandbox, start_worker
):
    # Given Stripe unreachable for the worker, and a small retry budget
    down = {
        "OPSGATE_STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        "OPSGATE_RETRY_BUDGET": "2",
        "OPSGATE_BREAKER_MIN_CALLS": "1000",
    }
    worker = start_worker(env=down)
    job_id = submit(4821, 101)
    # Then the job escalates once the budget is spent, at the stage that kept failing: the
    # plan stage, whose rules tier reads the charge (its age, dispute, twins) before planning
    wait_for(lambda: job(job_id).status == lifecycle.ESCALATED, timeout=60, what="escalation")
    with session_scope() as s:
        esc = s.scalar(select(Escalation).where(Escalation.job_id == job_id))
        assert esc is not None and esc.reason == "tool_error"
        assert "retry budget of 2" in esc.detail
    assert job(job_id).resume_status == lifecycle.QUEUED
    assert sandbox.applied() == []
    # When Stripe is back and an operator retries the job
    worker.stop()
    start_worker("--beat", env=RECOVERY)
    result = opsgate("jobs", "retry", job_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [job_id, lifecycle.QUEUED]
    # Then it completes, with one refund, and the decision is on record
    wait_for(lambda: job(job_id).status == lifecycle.COMPLETED, timeout=60, what="completion")
    assert len(sandbox.applied("stripe")) == 1
    with session_scope() as s:
        esc = s.scalar(select(Escalation).where(Escalation.job_id == job_id))
        assert esc is not None and (esc.status, esc.decision) == ("closed", "retry")
        assert esc.decided_by is not None and esc.decided_by.startswith("cli:")


def test_an_open_breaker_parks_jobs_which_resume_or_cancel(pg_env, sandbox, start_worker):
    # Given a breaker that opens at the first failure and stays open
    down = {
        "OPSGATE_STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        "OPSGATE_BREAKER_MIN_CALLS": "1",
        "OPSGATE_BREAKER_OPEN_SECONDS": "3600",
    }
    breaker.reset("stripe")
    worker = start_worker(env=down)
    parked, doomed = submit(4821, 101), submit(4822, 102)
    # Then both jobs park (at planning, which reads the charge) instead of hammering Stripe
    # or escalating
    for job_id in (parked, doomed):
        wait_for(lambda j=job_id: job(j).status == lifecycle.PAUSED, timeout=60, what="parking")
        assert job(job_id).status_reason.startswith("circuit_open: stripe")
        assert job(job_id).resume_status == lifecycle.QUEUED and job(job_id).resume_at is not None
    assert breaker.status("stripe")["state"] == "open"
    # When an operator cancels one, and resumes the other once Stripe is back
    cancelled = opsgate("jobs", "cancel", doomed, "--reason", "customer withdrew")
    assert cancelled.returncode == 0, cancelled.stderr
    assert job(doomed).status == lifecycle.CANCELLED
    worker.stop()
    breaker.reset("stripe")
    start_worker("--beat", env=RECOVERY)
    resumed = opsgate("jobs", "resume", parked)
    assert resumed.returncode == 0, resumed.stderr
    # Then the resumed job completes, the cancelled one wrote nothing
    wait_for(lambda: job(parked).status == lifecycle.COMPLETED, timeout=60, what="completion")
    assert [w["body"]["charge"] for w in sandbox.applied("stripe")] == ["ch_1001"]
    # And operator mistakes are one clear line
    again = opsgate("jobs", "resume", parked)
    assert again.returncode == 2 and "not paused" in again.stderr
