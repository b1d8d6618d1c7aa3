"""app/stages/reaper.py + app/jobs/outbox.py on SQLite, no broker: stalled active jobs get their
message due again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update

from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Job, utcnow
from app.stages import reaper


def _settle(job_id: str, *statuses: str, walk: Callable[..., None]) -> None:
    """Walk the job, mark its message taken, and make it look idle for two hours."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        walk(s, job, *statuses)
        s.commit()
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(updated_at=utcnow() - timedelta(hours=2), message_due_at=None)
        )
        s.commit()


def _pending(job_id: str) -> list[tuple[str, str]]:
    """The job's message that is due, as (task, queue), if one is."""
    with session_scope() as s:
        job = s.scalar(select(Job).where(Job.id == job_id, Job.message_due_at.is_not(None)))
        if job is None:
            return []
        stage = lifecycle.STAGES[job.status]
        return [(stage.task, stage.queue)]


def _version(job_id: str) -> int:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.version


def test_stalled_active_job_is_nudged_and_finished_ones_are_not(
    new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    # Given a job stuck in `ready` whose message was published (then lost),
    # a completed job and an escalated job, all idle for two hours
    stuck = new_job()
    _settle(stuck, "planned", "ready", walk=walk)
    done = new_job()
    _settle(done, "planned", "ready", "executed", "completed", walk=walk)
    escalated = new_job()
    _settle(escalated, "escalated", walk=walk)
    version = _version(stuck)

    # When the reaper looks for jobs without progress
    nudged = reaper.nudge_stale(0)

    # Then only the stuck job gets its stage message again
    assert nudged == 1
    assert _pending(stuck) == [("opsgate.execute", "execute")]
    assert _pending(done) == []
    assert _pending(escalated) == []
    # A nudge is not progress: the optimistic-lock version is unchanged
    assert _version(stuck) == version


def test_job_with_a_pending_message_is_not_nudged_twice(new_job: Callable[..., str]) -> None:
    # Given a fresh job whose intake message is still waiting for the relay
    job_id = new_job()
    assert _pending(job_id) == [("opsgate.plan", "plan")]

    # Then the reaper leaves it alone (the relay will publish the message it has)
    assert reaper.nudge_stale(0) == 0
    assert _pending(job_id) == [("opsgate.plan", "plan")]


def test_recently_updated_job_is_not_stale(
    new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    job_id = new_job()
    _settle(job_id, "planned", walk=walk)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow()))
        s.commit()

    assert reaper.nudge_stale(3600) == 0
    assert _pending(job_id) == []


def test_nudge_refreshes_the_clock_so_the_next_pass_waits(
    new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    job_id = new_job()
    _settle(job_id, "planned", walk=walk)

    assert reaper.nudge_stale(3600) == 1
    with session_scope() as s:
        s.execute(update(Job).values(message_due_at=None))
        s.commit()

    # Then a second pass within the hour does not pile up another message
    assert reaper.nudge_stale(3600) == 0
