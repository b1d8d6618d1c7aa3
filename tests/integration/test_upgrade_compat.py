"""Safe to upgrade a running fleet: what a fleet already holds keeps working after a deploy.

`tests/fixtures/upgrade/fleet-2026-12.json` was taken from a real `opsgate demo` database and
the code of 2026-12-04: the Celery task and queue names messages in flight are addressed to,
canonical JSON and its hashes, stored plan steps' `args_hash`, every job's audit chain, and an
approval token still outstanding. A refactor that renames a task, reorders a serialization or
changes a hash fails here, not in production.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.audit import chain as audit
from app.celery_app import celery_app
from app.controls import approvals
from app.core.db import session_scope
from app.jobs.lifecycle import QUEUES
from app.models import AuditEvent

pytestmark = pytest.mark.integration

FIXTURE: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "upgrade" / "fleet-2026-12.json").read_text(
        encoding="utf-8"
    )
)


def test_task_and_queue_names_are_the_ones_messages_in_flight_name() -> None:
    import tasks.execute
    import tasks.human
    import tasks.maintenance
    import tasks.plan
    import tasks.verify  # noqa: F401 (registers the tasks)

    stored = FIXTURE["celery"]
    # Every name a message in flight may carry still has its task (new tasks are additive).
    current = {n for n in celery_app.tasks if n.startswith("opsgate.")}
    assert set(stored["tasks"]) <= current, sorted(set(stored["tasks"]) - current)
    routes = dict(celery_app.conf.task_routes or {})
    assert {k: routes.get(k) for k in stored["routes"]} == stored["routes"]
    assert list(QUEUES) == stored["queues"]
    assert celery_app.conf.task_default_queue == stored["default_queue"]


def test_canonical_json_and_its_hashes_are_byte_identical() -> None:
    for item in FIXTURE["canonical_json"]:
        text = audit.canonical_json(item["value"])
        assert text == item["json"]
        assert audit.sha256_hex(text) == item["sha256"]


def test_stored_args_hashes_still_match_their_arguments() -> None:
    steps = FIXTURE["plan_steps"]
    assert len(steps) >= 10
    for step in steps:
        assert audit.sha256_hex(audit.canonical_json(step["args"])) == step["args_hash"], step


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_audit_verify_holds_on_stored_chains(database: str, request: pytest.FixtureRequest) -> None:
    # Given the chains a fleet wrote before the upgrade, as they were stored, and one event
    # whose payload was changed since (a tampered row)
    request.getfixturevalue("sqlite_db" if database == "sqlite" else "pg_env")
    events = FIXTURE["audit_events"]
    bad = events[3]
    rows = [
        AuditEvent(**{**e, "payload": dict(e["payload"], tampered=True)})
        if e is bad
        else AuditEvent(**e)
        for e in events
    ]
    with session_scope() as s:
        s.add_all(rows)
        s.commit()
    # Then every other job's chain verifies, and the tampered one breaks at that event
    job_ids = sorted({e["job_id"] for e in events})
    assert len(job_ids) >= 10
    with session_scope() as s:
        assert s.query(AuditEvent).count() == len(events)
        found = {j: audit.verify_job(s, j) for j in job_ids}
    broken = found.pop(bad["job_id"])
    assert broken is not None and broken.seq == bad["seq"], broken
    assert broken.problem == "event content does not match its hash"
    assert set(found.values()) == {None}


def test_an_outstanding_approval_token_still_authorizes_its_action(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.env import reset_process_state

    stored = FIXTURE["approval"]
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", stored["signing_keys"])
    reset_process_state()
    action = approvals.action_hash(stored["job_id"], stored["step"], stored["policy_version"])
    assert action == stored["action_hash"]
    verified = approvals.verify(stored["token"], action)
    assert (verified.approval_id, verified.approvers, verified.key_id) == (
        stored["approval_id"],
        stored["approvers"],
        stored["key_id"],
    )
    other = approvals.action_hash(stored["job_id"], stored["step"], "another-policy")
    with pytest.raises(approvals.TokenRefused, match="another action"):
        approvals.verify(stored["token"], other)
