"""The audit trail on real PostgreSQL after real runs: the story `opsgate audit show` tells,
`audit verify` catching edits and deletions, the database refusing to change audit rows,
the SIEM export, the three identities, and erasure leaving every chain verifiable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import select, text

from app.audit import chain as audit
from app.audit import checkpoints, verify
from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import AuditEvent, Delivery, Job, ModelCall, ToolCall
from tests.support.env import ROOT
from tests.support.jobs import settle, submit_ticket
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.integration


def run_refund(ticket: int, requester: int, delivery: str) -> str:
    job_id = submit_ticket(ticket, requester, delivery, submitted_by="key:zendesk-bridge")
    settle(job_id, timeout=60)
    return job_id


def opsgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def tamper(pg_url: str, statement: str, **params: Any) -> None:
    """Change the database as a superuser DBA could: with triggers switched off."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement, params)


@pytest.fixture
def completed_job(pg_env: dict[str, str], sandbox: Sandbox, start_worker: Any) -> str:
    start_worker()
    job_id = run_refund(4821, 101, "audit-1")
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == lifecycle.COMPLETED
        checkpoints.take(s)
        s.commit()
    return job_id


def test_audit_show_tells_who_what_data_which_rules_what_changed_and_the_cost(
    completed_job: str,
) -> None:
    shown = opsgate("audit", "show", completed_job, "--json")
    assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    # Who asked: the human (requester) and the system that vouched for them
    assert story["who_asked"]["requester"] == "zendesk-user:101"
    assert story["who_asked"]["submitted_by"] == "key:zendesk-bridge"
    # Which agent runtime acted
    assert story["agent_runtimes"] == ["agent:opsgate-worker"] or all(
        a.startswith("agent:") for a in story["agent_runtimes"]
    )
    # What data it saw, under which service identities
    seen = {(d["tool"], d["service_identity"]) for d in story["data_seen"] if "tool" in d}
    assert ("zendesk.get_ticket", "zendesk:agent@opsgate.example") in seen or any(
        t == "zendesk.get_ticket" for t, _ in seen
    )
    assert any(t == "stripe.get_charge" for t, _ in seen)
    # What it proposed, and which rules allowed it
    assert [s["tool"] for s in story["proposed"]["steps"]] == [
        "stripe.refund",
        "zendesk.add_comment",
    ]
    allowed = " ".join(a["what"] for a in story["allowed_by"])
    assert "autonomy_grant" in allowed and "soft check" in allowed
    # What changed, in which system, under which identity, for whom
    changed = {c["tool"]: c for c in story["changed"]}
    refund = changed["stripe.refund"]
    assert refund["system"] == "stripe" and refund["service_identity"]
    assert refund["result_id"].startswith("re_")
    assert refund["requester_ref"] == audit.reference("zendesk-user:101")
    assert story["cost"]["tool_calls"] >= 5 and story["cost"]["model_usd"] == "0"
    assert story["chain"]["verified"] is True
    # And the same story reads as text for a person
    text_story = opsgate("audit", "show", completed_job[:8])
    assert text_story.returncode == 0, text_story.stderr
    for heading in ("Who asked", "What data it saw", "What changed", "What it cost"):
        assert heading in text_story.stdout
    assert "chain verified" in text_story.stdout


def test_every_tool_call_names_the_three_identities(completed_job: str) -> None:
    with session_scope() as s:
        events = s.scalars(
            select(AuditEvent).where(
                AuditEvent.job_id == completed_job, AuditEvent.kind == "tool_call"
            )
        ).all()
        calls = s.scalars(select(ToolCall).where(ToolCall.job_id == completed_job)).all()
    assert len(events) == len(calls) > 0
    for ev in events:
        ids = ev.payload["identities"]
        assert ids["requester"] == audit.reference("zendesk-user:101")
        assert ids["agent"].startswith("agent:")
        assert ids["service"] in {c.service_identity for c in calls}
        # references and hashes only: no e-mail address in a chained payload
        assert "@example.com" not in json.dumps(ev.payload)


def test_verify_names_the_first_broken_link_and_exits_non_zero(
    completed_job: str, pg_env: dict[str, str]
) -> None:
    ok = opsgate("audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("verified")
    with session_scope() as s:
        last = s.scalar(
            select(AuditEvent.seq)
            .where(AuditEvent.job_id == completed_job)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
    # An edited middle event
    tamper(
        pg_env["OPSGATE_DATABASE_URL"],
        "UPDATE audit_events SET actor = 'agent:someone-else' WHERE job_id = %(j)s AND seq = 3",
        j=completed_job,
    )
    edited = opsgate("audit", "verify", "--job", completed_job)
    assert edited.returncode == 1
    assert f"BROKEN {completed_job} at 3" in edited.stdout
    # A deleted last event (anchored by the checkpoint)
    tamper(
        pg_env["OPSGATE_DATABASE_URL"],
        "DELETE FROM audit_events WHERE job_id = %(j)s AND seq >= 3",
        j=completed_job,
    )
    deleted = opsgate("audit", "verify", "--json")
    assert deleted.returncode == 1
    found = json.loads(deleted.stdout)
    assert found["ok"] is False
    assert {(b["chain"], b["seq"]) for b in found["breaks"]} == {(completed_job, last)}


def test_verify_checks_anchors_kept_outside_the_database(completed_job: str) -> None:
    with session_scope() as s:
        anchored, _ = checkpoints.replay(s)
    [known] = anchored.hashes
    assert opsgate("audit", "verify", "--anchor", known).returncode == 0
    missing = opsgate("audit", "verify", "--anchor", "f" * 64)
    assert missing.returncode == 1 and "anchor" in missing.stdout


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_postgresql_refuses_to_change_audit_rows(
    completed_job: str, pg_env: dict[str, str], statement: str
) -> None:
    with session_scope() as s:
        before = audit.count(s, completed_job)
    with (
        psycopg.connect(pg_env["OPSGATE_DATABASE_URL"], autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute(statement)
    with session_scope() as s:
        assert audit.count(s, completed_job) == before


def test_export_writes_every_event_and_checkpoint_as_json_lines(
    completed_job: str, tmp_path: Any
) -> None:
    target = tmp_path / "audit.jsonl"
    done = opsgate("audit", "export", "--output", str(target))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    with session_scope() as s:
        events = s.scalar(text("SELECT count(*) FROM audit_events"))
        points = s.scalar(text("SELECT count(*) FROM audit_checkpoints"))
    assert sum(1 for x in lines if x["type"] == "event") == events
    assert sum(1 for x in lines if x["type"] == "checkpoint") == points >= 1
    # Each exported event re-hashes to its recorded hash: a SIEM can verify on its own
    for x in lines:
        if x["type"] == "event":
            digest = audit.event_hash(
                x["prev_hash"], x["chain"], x["seq"], x["kind"], x["actor"], x["payload"]
            )
            assert digest == x["hash"]
    one = opsgate("audit", "export", "--job", completed_job)
    assert {json.loads(x)["chain"] for x in one.stdout.splitlines()} == {completed_job}


def test_erasing_a_data_subject_leaves_every_chain_verifiable(completed_job: str) -> None:
    # Given a completed job whose tool calls read the customer's e-mail address
    def holds(value: str) -> int:
        with session_scope() as s:
            rows = [
                *s.scalars(select(ToolCall.response).where(ToolCall.job_id == completed_job)),
                *s.scalars(select(ModelCall.request).where(ModelCall.job_id == completed_job)),
                *s.scalars(select(Delivery.body)),
            ]
        return sum(value in json.dumps(r, default=str) for r in rows)

    assert holds("alice@example.com") > 0
    # When the customer asks to be erased
    erased = opsgate("data", "erase", "alice@example.com", "--yes", "--json")
    assert erased.returncode == 0, erased.stderr
    result = json.loads(erased.stdout)
    assert completed_job in result["job_ids"] and result["tool_calls"] > 0
    # Then no store holds the address, every chain still verifies, and the erasure is on record
    assert holds("alice@example.com") == 0
    assert opsgate("audit", "verify").returncode == 0
    with session_scope() as s:
        kinds = s.scalars(
            select(AuditEvent.kind).where(AuditEvent.job_id.in_([completed_job, audit.FLEET]))
        ).all()
    assert kinds.count("erasure") == 2


def test_kill_switch_flips_are_on_the_fleet_chain(completed_job: str) -> None:
    assert opsgate("killswitch", "on", "--reason", "drill").returncode == 0
    assert opsgate("killswitch", "off", "--reason", "drill over").returncode == 0
    with session_scope() as s:
        flips = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.job_id == audit.FLEET, AuditEvent.kind == "kill_switch")
            .order_by(AuditEvent.seq)
        ).all()
        assert [f.payload["engaged"] for f in flips] == [True, False]
        assert verify.one_job(s, audit.FLEET) == []


def test_erasure_through_the_api_records_the_admin_key_as_the_actor(
    completed_job: str, start_api: Any
) -> None:
    # Given an API with an admin key and a reviewer key, and the CLI pointed at it
    keys = "dpo:admin:dpo-key-0001,rita:reviewer:rev-key-0002"
    api = start_api({"OPSGATE_API_KEYS": keys})
    # A reviewer may not erase
    refused = httpx.post(
        f"{api}/v1/privacy/erasures",
        json={"subject": "alice@example.com"},
        headers={"Authorization": "Bearer rev-key-0002"},
    )
    assert refused.status_code == 403
    # When the data protection officer's key erases through the CLI
    env = dict(os.environ, OPSGATE_API_URL=api, OPSGATE_API_KEY="dpo-key-0001")
    done = subprocess.run(
        [sys.executable, "-m", "app", "data", "erase", "alice@example.com", "--yes", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert completed_job in json.loads(done.stdout)["job_ids"]
    # Then the erasure is on the chains in the key's name, and the chains still verify
    with session_scope() as s:
        actors = s.scalars(
            select(AuditEvent.actor).where(
                AuditEvent.job_id == completed_job, AuditEvent.kind == "erasure"
            )
        ).all()
        assert actors == ["key:dpo"]
        assert verify.whole_trail(s) == []
