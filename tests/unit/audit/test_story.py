"""app/audit/story.py: a job's audit trail told for a person, from real intake, real recorded
calls and the real chain on SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from app.audit import chain as audit
from app.audit.story import story
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.models import Job
from tests.support.env import reset_process_state


@pytest.fixture
def job_id(
    sqlite_db: Path,
    redis_db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    new_job: Callable[..., str],
) -> str:
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    redis.Redis.from_url(redis_db_url).flushdb()
    reset_process_state()
    return new_job(requester="alice@example.com")


def told(job_id: str) -> Any:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return story(session, job)


def test_a_new_job_says_who_asked_and_that_nothing_ran(job_id: str) -> None:
    t = told(job_id)
    assert (t["job"]["id"], t["job"]["workflow"], t["job"]["status"]) == (
        job_id,
        "support_refund",
        "queued",
    )
    who = t["who_asked"]
    assert who["requester"] == "alice@example.com"
    assert who["requester_ref"] == audit.reference("alice@example.com")
    assert who["intake_key"] is not None
    assert (t["agent_runtimes"], t["data_seen"], t["changed"]) == ([], [], [])
    assert t["cost"]["model_calls"] == t["cost"]["tool_calls"] == 0
    assert t["chain"] == {"events": 1, "verified": True, "breaks": []}
    assert [e["kind"] for e in t["timeline"]] == ["intake"]


def test_what_the_agent_read_is_in_the_story_with_its_identity(job_id: str) -> None:
    rec = CallRecorder(stage="plan", workflow="support_refund")
    rec.read("zendesk.list_comments", {"ticket_id": 4821}, lambda: [{"id": 1}])
    with session_scope() as session:
        rec.write(session, job_id, requester="alice@example.com")
        session.commit()
    t = told(job_id)
    [read] = t["data_seen"]
    assert "tool" in read and read["tool"] == "zendesk.list_comments"
    assert (read["stage"], read["outcome"]) == ("plan", "ok")
    assert read["service_identity"].startswith("zendesk:")
    assert t["cost"]["tool_calls"] == 1
    assert [e["kind"] for e in t["timeline"]] == ["intake", "tool_call"]
    assert t["agent_runtimes"] == [t["timeline"][1]["actor"]]
    assert t["chain"]["verified"] and t["chain"]["events"] == 2


def test_a_tampered_trail_shows_in_the_story(job_id: str) -> None:
    with session_scope() as session:
        # As someone with the database file would: drop the append-only trigger first.
        session.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        session.execute(
            text("UPDATE audit_events SET actor = 'forged' WHERE job_id = :j"), {"j": job_id}
        )
        session.commit()
    chain = told(job_id)["chain"]
    assert chain["verified"] is False
    [broken] = chain["breaks"]
    assert (broken["chain"], broken["seq"]) == (job_id, 1)
