"""How much database work one accepted delivery costs the API process (counts, not timings)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from tests.integration.test_intake_http import SECRET, signed, zendesk_event

pytestmark = pytest.mark.integration


@dataclass
class Work:
    """SQL statements (BEGIN/COMMIT/ROLLBACK are not statements) and commits seen."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0


@pytest.fixture
def api(pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("OPSGATE_ZENDESK_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("OPSGATE_API_KEYS", "desk:requester:desk-key")
    from tests.support.env import reset_process_state

    reset_process_state()
    from app.api.main import create_app

    with TestClient(create_app()) as client:
        yield client


def counted(client: TestClient, method: str, path: str, **kwargs: Any) -> tuple[Any, Work]:
    from app.core.db import get_engine

    engine, work = get_engine(), Work()

    def statement(*args: Any) -> None:
        work.statements.append(args[2])

    def commit(*_: Any) -> None:
        work.commits += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        # TestClient runs the response's background tasks (the publish) before returning.
        answer = client.request(method, path, **kwargs)
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    return answer, work


def stored() -> dict[str, int]:
    """Rows in the tables an accept writes."""
    from app.core.db import get_engine

    with get_engine().connect() as conn:
        return {
            table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("jobs", "job_events", "audit_events")
        }


def shape(statement: str) -> str:
    """`INSERT jobs`, `SELECT jobs`: the verb and the tables it writes (or first reads)."""
    words = statement.replace("\n", " ").replace("(", " ").split()
    if "INSERT" in words:
        return "INSERT " + ", ".join(words[i + 2] for i, w in enumerate(words) if w == "INSERT")
    return f"{words[0]} {words[words.index('FROM') + 1]}"


# One accepted delivery: one statement that inserts the job with the rows it comes with (its
# event and first audit event; its plan message is due on the job row itself; data-modifying
# CTEs on PostgreSQL), one for the
# delivery, one commit; nothing read back, and nothing written after the commit (the publish
# sends from memory; see app/jobs/outbox.py).
ACCEPT = ["INSERT jobs, audit_events", "INSERT deliveries"]


def test_one_zendesk_accept_is_one_transaction_of_two_statements(
    api: TestClient, pg_env: dict[str, str]
) -> None:
    # Given a signed Zendesk event the API has not seen
    body = zendesk_event(4821, 101)
    # When it is delivered, and then delivered again
    first, work = counted(api, "POST", "/webhooks/zendesk", content=body, headers=signed(body))
    again, repeat = counted(api, "POST", "/webhooks/zendesk", content=body, headers=signed(body))
    # Then the accept was one transaction of two statements
    assert first.status_code == 202, first.text
    assert [shape(s) for s in work.statements] == ACCEPT
    assert work.commits == 1
    # And its plan message was sent (by the background task, without touching the database)
    assert redis.Redis.from_url(pg_env["OPSGATE_REDIS_URL"]).llen("plan") == 1
    # And the repeat stored nothing (the same statement inserted no row) and read the original
    assert (
        again.status_code == 200
        and again.json()["jobs"][0]["job_id"] == first.json()["jobs"][0]["job_id"]
    )
    assert [shape(s) for s in repeat.statements] == [ACCEPT[0], "SELECT jobs"]
    assert stored() == {t: 1 for t in ("jobs", "job_events", "audit_events")}
    assert repeat.commits == 1


def test_one_jobs_api_accept_is_one_transaction_of_two_statements(api: TestClient) -> None:
    body = {
        "workflow": "it_request",
        "external_id": "INC-1001",
        "requester": "alice@example.com",
        "input": {"request_type": "password_reset", "target_login": "alice@example.com"},
    }
    headers = {"Authorization": "Bearer desk-key", "Idempotency-Key": "k-1"}
    first, work = counted(api, "POST", "/v1/jobs", json=body, headers=headers)
    again, repeat = counted(api, "POST", "/v1/jobs", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert [shape(s) for s in work.statements] == ACCEPT
    assert work.commits == 1
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    # A repeat with its Idempotency-Key stores nothing and finds the original by that key
    assert [shape(s) for s in repeat.statements] == [ACCEPT[0], "SELECT jobs"]
    assert stored() == {t: 1 for t in ("jobs", "job_events", "audit_events")}
    assert repeat.commits == 1
