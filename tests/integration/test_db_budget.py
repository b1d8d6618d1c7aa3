"""The database work a refund job costs the fleet, counted, and held to its budget (issue 20).

The counts come from the workers themselves (app.telemetry.dbwork: SQLAlchemy engine events
between task_prerun and task_postrun, summed per task name in Redis), over every task the jobs
cause in workers; the reaper is not running here. A count, not a timing: the same figures on
any machine.
"""

from __future__ import annotations

import pytest

from app.jobs import lifecycle
from app.telemetry import metrics
from tests.support.jobs import settle, submit_refund_jobs
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.integration

# Per support_refund job (rules planner, refund + internal note: six stage hops): issue 20's
# budget, at most 40 statements and 12 commits. Two short transactions per hop, none to publish
# (the job row is the outbox), one INSERT for a transition's history (`job_events` is a view of
# the audit chain's transition events).
STATEMENTS_PER_JOB = 40
COMMITS_PER_JOB = 12
JOBS = 4


def test_a_refund_job_stays_within_its_statement_and_commit_budget(
    pg_env, sandbox: Sandbox, start_worker
):
    # Given a worker of the default shape and refundable tickets
    start_worker()
    cases = sandbox.refund_cases(JOBS)
    # When the refund jobs run to completion
    job_ids = submit_refund_jobs(cases, "budget", "zendesk")
    assert [settle(j) for j in job_ids] == [lifecycle.COMPLETED] * JOBS
    assert len(sandbox.applied("stripe")) == JOBS
    # Then the workers counted every stage run, and the work per job is within budget
    work = metrics.task_work()
    runs = {task: figures["runs"] for task, figures in work.items()}
    assert runs == {
        "opsgate.plan": JOBS,
        "opsgate.verify_proposal": JOBS,
        "opsgate.execute": 2 * JOBS,
        "opsgate.verify_outcome": 2 * JOBS,
    }
    statements = sum(f["statements"] for f in work.values()) / JOBS
    commits = sum(f["commits"] for f in work.values()) / JOBS
    per_task = {t: (f["statements"] / f["runs"], f["commits"] / f["runs"]) for t, f in work.items()}
    assert commits <= COMMITS_PER_JOB, per_task
    assert statements <= STATEMENTS_PER_JOB, per_task
