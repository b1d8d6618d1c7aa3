"""app/jobs/lifecycle.py: the transition table, `transition()` side effects, and the optimistic
lock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.errors import IllegalTransition, StaleJob
from app.jobs import lifecycle
from app.models import AuditEvent, Job, JobEvent

# The state machine as specified (written out here, not read from app.jobs.lifecycle, so a change to
# the table in the code shows up as a failing test).
_EXITS = {"escalated", "failed", "cancelled", "paused"}
EXPECTED: dict[str, set[str]] = {
    "queued": {"planned"} | _EXITS,
    "planned": {"ready"} | _EXITS,
    "ready": {"executed"} | _EXITS,
    "executed": {"ready", "completed"} | _EXITS,
    # Retry and resume go back to the stage where the job stopped (its resume_status).
    "escalated": {"queued", "planned", "ready", "executed", "rejected", "cancelled", "failed"},
    "paused": {"queued", "planned", "ready", "executed", "escalated", "cancelled", "failed"},
    "failed": {"queued", "planned", "ready", "executed"},
    "completed": set(),
    "rejected": set(),
    "cancelled": set(),
}
ALL_STATUSES = sorted(EXPECTED)
ALLOWED = sorted((a, b) for a, targets in EXPECTED.items() for b in targets)
FORBIDDEN = [
    ("queued", "completed"),  # skipping plan, verify and act
    ("queued", "executed"),
    ("queued", "ready"),
    ("planned", "executed"),  # acting without verification
    ("planned", "completed"),
    ("ready", "completed"),  # done without the read-back
    ("ready", "planned"),
    ("executed", "queued"),
    ("escalated", "completed"),  # a human decision never marks a job done by itself
    ("escalated", "paused"),
    ("paused", "completed"),
    ("failed", "completed"),
    ("completed", "queued"),
    ("rejected", "queued"),
    ("cancelled", "queued"),
    ("queued", "queued"),  # no self-loops
    ("ready", "ready"),
]

# Which task each status hands the job to (DESIGN.md: one queue per stage).
NEXT_TASK = {
    "queued": ("opsgate.plan", "plan"),
    "planned": ("opsgate.verify_proposal", "verify"),
    "ready": ("opsgate.execute", "execute"),
    "executed": ("opsgate.verify_outcome", "verify"),
    "escalated": ("opsgate.notify_human", "human"),
}


@pytest.mark.parametrize(("src", "dst"), ALLOWED)
def test_every_allowed_transition_passes(src: str, dst: str) -> None:
    assert lifecycle.can_transition(src, dst)


@pytest.mark.parametrize(("src", "dst"), FORBIDDEN)
def test_forbidden_transitions_do_not_pass(src: str, dst: str) -> None:
    assert not lifecycle.can_transition(src, dst)


def test_the_table_links_nothing_beyond_the_specified_transitions() -> None:
    # Every ordered pair of statuses: allowed exactly when the specification says so.
    for src in ALL_STATUSES:
        for dst in ALL_STATUSES:
            assert lifecycle.can_transition(src, dst) == (dst in EXPECTED[src]), (src, dst)


def test_unknown_statuses_link_nowhere() -> None:
    assert not lifecycle.can_transition("bogus", "queued")
    assert not lifecycle.can_transition("queued", "bogus")


@pytest.mark.parametrize("status", ["completed", "rejected", "cancelled"])
def test_final_states_have_no_exits(status: str) -> None:
    assert status in lifecycle.TERMINAL
    assert not any(lifecycle.can_transition(status, dst) for dst in ALL_STATUSES)


def test_failed_is_terminal_except_for_the_operator_retry() -> None:
    # `failed` counts as terminal (nothing moves it by itself), but `opsgate jobs retry`
    # sends it back to an active stage; those are its only exits.
    assert "failed" in lifecycle.TERMINAL
    exits = {d for d in ALL_STATUSES if lifecycle.can_transition("failed", d)}
    assert exits == set(lifecycle.ACTIVE)


def _counts(job_id: str) -> tuple[int, int]:
    """(job events, audit events) recorded for the job."""
    with session_scope() as s:
        return tuple(  # type: ignore[return-value]
            int(
                s.scalar(select(func.count()).select_from(model).where(model.job_id == job_id)) or 0
            )
            for model in (JobEvent, AuditEvent)
        )


def test_transition_records_event_audit_and_next_stage_message(new_job: Callable[..., str]) -> None:
    # Given a queued job (intake wrote one event, one audit entry, and its message is due)
    job_id = new_job()
    before = _counts(job_id)

    # When the planner moves it to planned
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        lifecycle.transition(s, job, lifecycle.PLANNED, actor="worker:plan", reason="plan stored")
        s.commit()
        # (the session keeps the message it wrote, to send right after the commit)
        written = s.info.get(lifecycle.WRITTEN)

    # Then one more of each, describing exactly that move
    assert _counts(job_id) == (before[0] + 1, before[1] + 1)
    assert written == [(job_id, "opsgate.verify_proposal", "verify")]
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "planned" and job.status_reason == "plan stored"
        event = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc())
        ).first()
        assert event is not None
        assert (event.from_status, event.to_status, event.reason, event.actor) == (
            "queued",
            "planned",
            "plan stored",
            "worker:plan",
        )
        audit_ev = s.scalars(
            select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.seq.desc())
        ).first()
        assert audit_ev is not None
        assert (audit_ev.kind, audit_ev.actor) == ("transition", "worker:plan")
        assert {k: audit_ev.payload[k] for k in ("from", "to", "reason")} == {
            "from": "queued",
            "to": "planned",
            "reason": "plan stored",
        }
        # And the next stage's message is due on the job row until a worker takes it
        assert job.message_due_at is not None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["planned"], NEXT_TASK["planned"]),
        (["planned", "ready"], NEXT_TASK["ready"]),
        (["planned", "ready", "executed"], NEXT_TASK["executed"]),
        (["planned", "ready", "executed", "ready"], NEXT_TASK["ready"]),
        (["escalated"], NEXT_TASK["escalated"]),
        (["escalated", "queued"], NEXT_TASK["queued"]),
        (["paused", "ready"], NEXT_TASK["ready"]),
        (["failed", "queued"], NEXT_TASK["queued"]),
    ],
)
def test_each_stage_status_queues_its_task(
    new_job: Callable[..., str],
    walk: Callable[..., None],
    path: list[str],
    expected: tuple[str, str],
) -> None:
    job_id = new_job()
    with session_scope() as s:
        job = s.get(Job, job_id)
        walk(s, job, *path)
        s.commit()
        last = s.info[lifecycle.WRITTEN][-1]
        assert job is not None and job.message_due_at is not None
    assert last[1:] == expected


@pytest.mark.parametrize(
    "path",
    [
        ["planned", "ready", "executed", "completed"],
        ["cancelled"],
        ["failed"],
        ["escalated", "rejected"],
        ["paused"],
    ],
)
def test_terminal_and_parked_states_queue_no_task(
    new_job: Callable[..., str], walk: Callable[..., None], path: list[str]
) -> None:
    # Given a job one step before the final status
    job_id = new_job()
    with session_scope() as s:
        job = s.get(Job, job_id)
        walk(s, job, *path[:-1])
        s.commit()
    events, audits = _counts(job_id)

    # When it takes the last step
    with session_scope() as s:
        job = s.get(Job, job_id)
        walk(s, job, path[-1])
        s.commit()
        written = s.info.get(lifecycle.WRITTEN)
        due = job.message_due_at

    # Then the move is recorded but nothing is queued
    assert _counts(job_id) == (events + 1, audits + 1)
    assert not written and due is None


def test_forbidden_move_raises_and_changes_nothing(new_job: Callable[..., str]) -> None:
    job_id = new_job()
    before = _counts(job_id)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        with pytest.raises(IllegalTransition, match="queued -> completed"):
            lifecycle.transition(s, job, lifecycle.COMPLETED, actor="test")
        assert job.status == "queued"
        s.commit()
    assert _counts(job_id) == before


def test_transition_resets_deliveries_and_sets_resume_at(new_job: Callable[..., str]) -> None:
    from datetime import UTC, datetime

    job_id = new_job()
    resume = datetime(2030, 1, 1, tzinfo=UTC)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.stage_deliveries = 3
        s.commit()
        lifecycle.transition(
            s, job, lifecycle.PAUSED, actor="test", reason="kill switch", resume_at=resume
        )
        s.commit()
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.stage_deliveries == 0
        assert job.resume_at is not None
        assert job.resume_at.replace(tzinfo=UTC) == resume


def test_second_writer_of_a_job_gets_stale_job(new_job: Callable[..., str]) -> None:
    # Given two workers that both loaded the job at version 1. (Each read transaction is
    # ended before the other starts: SQLite sessions take the write lock at BEGIN.)
    job_id = new_job()
    with session_scope() as first, session_scope() as second:
        job_a = first.get(Job, job_id)
        first.commit()
        job_b = second.get(Job, job_id)
        second.commit()
        assert job_a is not None and job_b is not None
        assert job_a.version == job_b.version

        # When the first one transitions and commits
        lifecycle.transition(first, job_a, lifecycle.PLANNED, actor="worker-a")
        first.commit()

        # Then the second one's transition is refused
        with pytest.raises(StaleJob):
            lifecycle.transition(second, job_b, lifecycle.ESCALATED, actor="worker-b")
        second.rollback()

    # And only the winner's move is on record
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "planned"
        moves = s.scalars(
            select(JobEvent.to_status).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
        assert moves == ["queued", "planned"]
    # And the loser's rolled-back transaction has no message left to send
    assert lifecycle.WRITTEN not in second.info


def test_a_savepoint_rolled_back_inside_the_transaction_keeps_its_messages(
    new_job: Callable[..., str],
) -> None:
    # Given a transition whose transaction then rolls back a savepoint of its own (as the model
    # spend ledger does when two workers insert the day's row at once)
    job_id = new_job()
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        lifecycle.transition(s, job, lifecycle.PLANNED, actor="worker:plan", reason="plan stored")
        nested = s.begin_nested()
        nested.rollback()
        s.commit()
        # Then the message of the committed transition is still there to send
        assert s.info.get(lifecycle.WRITTEN) == [(job_id, "opsgate.verify_proposal", "verify")]
