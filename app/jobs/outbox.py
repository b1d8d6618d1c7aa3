"""Publishing committed stage messages to Celery: the job row is the transactional outbox.

A stage message is written by the transaction that moves the job: `lifecycle.enqueue_stage`
sets the job's `message_due_at` (it goes out in the job's own UPDATE or INSERT, no row of its
own). Right after the commit the writer sends what it wrote from memory, with no database work,
through its process's sender thread (`app.jobs.sender`); the relay sends the same way. The
stage that takes the message clears `message_due_at` in the UPDATE that counts its delivery
(`app.stages.runner`), and the human task in its own transaction (`taken`). A message still due
after the grace period (the writer died between its commit and the send, or the broker refused
it) is sent again by the relay, which clears it. So a message is never lost, and is sent twice
only when it waited longer than the grace period to be taken (a stage skips a duplicate with
one statement).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.jobs import lifecycle
from app.jobs.lifecycle import Message
from app.jobs.sender import sender
from app.models import Job, utcnow

_BATCH = 500


def _send(messages: list[tuple[str, str, str]]) -> int:
    """Send (job id, task, queue) messages through the process's sender (one kombu client for
    the process's life, batched with its other threads' messages) and wait until they are out;
    how many were sent: all, or none when the broker refused them (they stay due)."""
    if not messages:
        return 0
    return sender().send_blocking([Message(*m) for m in messages])


def send_written(session: Session) -> int:
    """After the commit: send the messages this session's transaction wrote, from memory."""
    return _send(session.info.pop(lifecycle.WRITTEN, []))


def taken(session: Session, job_id: str) -> None:
    """Mark the job's message taken (in the transaction of the task that took it)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.message_due_at.is_not(None))
        .values(message_due_at=None)
        .execution_options(synchronize_session=False)
    )


def _due(session: Session, *where: ColumnElement[bool], limit: int | None = None) -> int:
    """Send the message of each job matching `where` whose message is still due, and clear it."""
    query = (
        select(Job.id, Job.status)
        .where(Job.message_due_at.is_not(None), *where)
        .order_by(Job.message_due_at)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(query.limit(limit) if limit else query).all()
    messages = [
        (job_id, stage.task, stage.queue)
        for job_id, status in rows
        if (stage := lifecycle.STAGES.get(status)) is not None
    ]
    sent = _send(messages)
    # Jobs whose status has no stage (a message left behind) are cleared with the sent ones;
    # a job whose send failed stays due.
    failed = {m[0] for m in messages[sent:]}
    done = [job_id for job_id, _ in rows if job_id not in failed]
    if done:
        session.execute(
            update(Job)
            .where(Job.id.in_(done))
            .values(message_due_at=None)
            .execution_options(synchronize_session=False)
        )
    return sent


def publish_for_job(job_id: str) -> int:
    """Send a job's due message after a transaction that did not keep its session's record of
    it (API and CLI commands that commit, then publish)."""
    with session_scope() as session:
        sent = _due(session, Job.id == job_id)
        session.commit()
    return sent


def relay(grace_seconds: float) -> int:
    """Send every message still due after the grace period (run by beat)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    total = 0
    while True:
        with session_scope() as session:
            sent = _due(session, Job.message_due_at <= cutoff, limit=_BATCH)
            session.commit()
        total += sent
        if sent < _BATCH:
            return total


def send_after_commit(messages: Iterable[Message]) -> int:
    """Send messages whose jobs just committed them (intake's Core path), with no database
    work: a crash or a broker outage before the send loses nothing (the relay sends them)."""
    return _send([(m.job_id, m.task, m.queue) for m in messages])
