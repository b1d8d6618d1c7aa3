"""Fixtures of the stage unit tests: the real Redis and jobs with a stored plan."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.core.db import session_scope
from app.jobs import lifecycle
from app.jobs.steps import Plan, Step
from app.models import Job
from app.stages.plan import store_plan
from tests.support.env import reset_process_state


@pytest.fixture
def redis_env(
    sqlite_db: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The real Redis for the gates at the call (kill switch, rate limit, breaker); no model
    endpoint, so only the rules tier plans."""
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    redis.Redis.from_url(redis_db_url).flushdb()
    reset_process_state()
    yield


@pytest.fixture
def job_with_plan(
    redis_env: None, new_job: Callable[..., str], walk: Callable[..., None]
) -> Callable[..., str]:
    """A job for `ticket` with a stored plan of `steps` (tool, args), stored by the real plan
    stage's `store_plan` and moved through the statuses `to` with the real `transition`."""

    def make(
        *steps: tuple[str, dict[str, Any]],
        to: tuple[str, ...] = (lifecycle.PLANNED,),
        ticket: int = 4821,
        requester: str = "alice@example.com",
        summary: str = "Refund 25.00 USD on charge ch_1001 as asked in ticket 4821",
    ) -> str:
        job_id = new_job(ticket_id=ticket, requester=requester)
        plan = Plan(
            workflow="support_refund",
            summary=summary,
            confidence=0.95,
            steps=[Step(tool=tool, args=args) for tool, args in steps],
        )
        with session_scope() as session:
            job = session.get(Job, job_id)
            assert job is not None
            store_plan(session, job, plan, "rules")
            walk(session, job, *to)
            session.commit()
        return job_id

    return make
