"""Unit-layer fixtures: jobs created through real intake on the migrated SQLite database."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

_delivery = itertools.count(1)


@pytest.fixture
def new_job(sqlite_db: Path) -> Callable[..., str]:
    """Create (and commit) a queued support_refund job through intake; returns its id."""
    from app.core.db import session_scope
    from app.intake import submissions

    def make(ticket_id: int = 4821, requester: str = "alice@example.com") -> str:
        n = next(_delivery)
        sub = submissions.parse_submission(
            {
                "workflow": "support_refund",
                "external_id": f"ticket-{ticket_id}-{n}",
                "input": {"ticket_id": ticket_id},
                "requester": requester,
                "delivery_id": f"delivery-{n}",
            }
        )
        with session_scope() as session:
            job, created = submissions.accept(session, sub, submitted_by="test")
            assert created
            session.commit()
            return job.id

    return make


@pytest.fixture
def walk() -> Callable[..., None]:
    """Move a job through a series of statuses with the real `transition`."""
    from app.jobs import lifecycle
    from app.models import Job

    def move(session: Session, job: Job, *statuses: str) -> None:
        for status in statuses:
            lifecycle.transition(session, job, status, actor="test")

    return move
