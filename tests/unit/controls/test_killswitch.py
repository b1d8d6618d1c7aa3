"""app/controls/killswitch.py: switches recorded on the embedded SQLite and live in the real
Redis; a call under an engaged switch parks, and a Redis that lost them reloads the history."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from app.audit import chain
from app.controls import killswitch
from app.core.db import session_scope
from app.errors import InputError, KillSwitchEngaged
from app.models import AuditEvent, KillSwitchEvent
from tests.support.env import reset_process_state


@pytest.fixture
def switches(sqlite_db: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """SQLite plus the test's Redis database, emptied; returns a client to read Redis."""
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    reset_process_state()
    client = redis.Redis.from_url(redis_db_url)
    client.flushdb()
    return client


def engage(scope: str, reason: str = "incident 42") -> None:
    with session_scope() as session:
        killswitch.engage(session, scope, "alice", reason)
        session.commit()


def test_a_scope_names_the_whole_fleet_a_workflow_or_a_tool() -> None:
    assert killswitch.scope_of() == "global"
    assert killswitch.scope_of(workflow="support_refund") == "workflow:support_refund"
    assert killswitch.scope_of(tool="stripe.refund") == "tool:stripe.refund"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workflow": "support_refund", "tool": "stripe.refund"}, "not both"),
        ({"workflow": "refunds"}, "unknown workflow 'refunds'; known: "),
        ({"tool": "stripe.charge"}, "unknown tool 'stripe.charge'; known: "),
    ],
)
def test_a_bad_scope_is_an_input_error_naming_what_is_known(
    kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        killswitch.scope_of(**kwargs)


def test_an_engaged_tool_switch_parks_that_tool_only_until_released(
    switches: redis.Redis,
) -> None:
    killswitch.check("support_refund", "stripe.refund", write=True)
    engage("tool:stripe.refund")

    with pytest.raises(KillSwitchEngaged) as raised:
        killswitch.check("support_refund", "stripe.refund", write=True)
    assert raised.value.scope == "tool:stripe.refund"
    assert "engaged by alice" in raised.value.why
    killswitch.check("support_refund", "zendesk.add_comment", write=True)

    with session_scope() as session:
        killswitch.release(session, "tool:stripe.refund", "bob", "fixed")
        session.commit()
    killswitch.check("support_refund", "stripe.refund", write=True)


def test_every_flip_is_recorded_and_on_the_fleets_audit_chain(switches: redis.Redis) -> None:
    engage("workflow:support_refund")
    with session_scope() as session:
        killswitch.release(session, "workflow:support_refund", "bob", "fixed")
        session.commit()

    with session_scope() as session:
        events = session.query(KillSwitchEvent).order_by(KillSwitchEvent.id).all()
        assert [(e.scope, e.engaged, e.actor) for e in events] == [
            ("workflow:support_refund", True, "alice"),
            ("workflow:support_refund", False, "bob"),
        ]
        audit = session.query(AuditEvent).filter_by(job_id=chain.FLEET).order_by(AuditEvent.seq)
        assert [(a.kind, a.payload["engaged"]) for a in audit] == [
            ("kill_switch", True),
            ("kill_switch", False),
        ]
        assert chain.verify_job(session, chain.FLEET) is None


def test_the_global_switch_covers_every_workflow_and_tool(switches: redis.Redis) -> None:
    engage("global")

    for workflow, tool in [
        ("support_refund", "stripe.get_charge"),
        ("it_request", "okta.get_user"),
    ]:
        with pytest.raises(KillSwitchEngaged) as raised:
            killswitch.check(workflow, tool, write=False)
        assert raised.value.scope == "global"


def test_a_redis_that_lost_the_switches_reloads_them_from_the_history(
    switches: redis.Redis,
) -> None:
    engage("tool:stripe.refund")
    engage("tool:okta.suspend_user")
    with session_scope() as session:
        killswitch.release(session, "tool:okta.suspend_user", "bob", "fixed")
        session.commit()

    switches.flushdb()

    with pytest.raises(KillSwitchEngaged):
        killswitch.check("support_refund", "stripe.refund", write=True)
    killswitch.check("it_request", "okta.suspend_user", write=True)
    rows = killswitch.status()
    assert [(r["scope"], r["source"], r["by"], r["reason"]) for r in rows] == [
        ("tool:stripe.refund", "runtime", "alice", "incident 42")
    ]


def test_an_unreadable_switch_stops_writes_and_lets_reads_through(
    sqlite_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_REDIS_URL", "redis://127.0.0.1:1/0")
    reset_process_state()

    killswitch.check("support_refund", "stripe.get_charge", write=False)
    with pytest.raises(KillSwitchEngaged) as raised:
        killswitch.check("support_refund", "stripe.refund", write=True)
    assert raised.value.scope == "unknown"
    assert "writes fail closed" in raised.value.why
