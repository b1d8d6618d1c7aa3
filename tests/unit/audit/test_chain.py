"""app/audit/chain.py: the per-job hash chain holds, and any edit or deletion is found."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.audit import chain as audit
from app.audit import verify
from app.core.db import session_scope
from tests.support.audit import JOB, tamper


def test_appended_chain_verifies(chain: str) -> None:
    with session_scope() as s:
        assert audit.verify_job(s, chain) is None
        assert verify.whole_trail(s) == []
        assert audit.count(s, chain) == 4


def test_events_link_to_their_predecessor(chain: str) -> None:
    with session_scope() as s:
        rows = s.execute(
            text("SELECT seq, prev_hash, hash FROM audit_events WHERE job_id = :j ORDER BY seq"),
            {"j": chain},
        ).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert rows[0].prev_hash == audit.GENESIS
    for earlier, later in zip(rows, rows[1:], strict=False):
        assert later.prev_hash == earlier.hash
    assert len({r.hash for r in rows}) == 4


def test_edited_payload_is_detected_at_its_seq(chain: str) -> None:
    # Given someone rewrites the policy decision's amount directly in the database
    tamper(
        "UPDATE audit_events SET payload = json_set(payload, '$.amount', 99999) "
        "WHERE job_id = :j AND seq = 3",
        j=chain,
    )

    # Then verification points at exactly that event
    with session_scope() as s:
        broken = audit.verify_job(s, chain)
        assert verify.whole_trail(s) == [broken]
    assert broken is not None
    assert (broken.job_id, broken.seq) == (chain, 3)
    assert "content" in broken.problem


def test_edited_actor_is_detected(chain: str) -> None:
    tamper("UPDATE audit_events SET actor = 'someone-else' WHERE job_id = :j AND seq = 1", j=chain)

    with session_scope() as s:
        broken = audit.verify_job(s, chain)
    assert broken is not None and broken.seq == 1


def test_edited_and_rehashed_event_breaks_the_next_link(chain: str) -> None:
    # Given an editor who also recomputes the edited event's own hash
    with session_scope() as s:
        row = s.execute(
            text(
                "SELECT prev_hash, kind, actor, payload FROM audit_events "
                "WHERE job_id = :j AND seq = 2"
            ),
            {"j": chain},
        ).one()
    payload = json.loads(row.payload)
    payload["to"] = "completed"
    forged = audit.event_hash(row.prev_hash, chain, 2, row.kind, row.actor, payload)
    tamper(
        "UPDATE audit_events SET payload = :p, hash = :h WHERE job_id = :j AND seq = 2",
        p=json.dumps(payload),
        h=forged,
        j=chain,
    )

    # Then the following event no longer links to it
    with session_scope() as s:
        broken = audit.verify_job(s, chain)
    assert broken is not None
    assert broken.seq == 3 and "previous-hash" in broken.problem


def test_deleted_middle_event_is_detected(chain: str) -> None:
    tamper("DELETE FROM audit_events WHERE job_id = :j AND seq = 2", j=chain)

    with session_scope() as s:
        broken = audit.verify_job(s, chain)
    assert broken is not None
    assert broken.seq == 2 and "missing" in broken.problem


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'x' WHERE job_id = :j",
        "DELETE FROM audit_events WHERE job_id = :j",
    ],
)
def test_the_database_refuses_to_change_audit_rows(chain: str, statement: str) -> None:
    with session_scope() as s, pytest.raises(DBAPIError, match="append-only"):
        s.execute(text(statement), {"j": chain})
    with session_scope() as s:
        assert audit.count(s, chain) == 4


def test_other_jobs_chains_are_independent(chain: str) -> None:
    other = "00000000-0000-4000-8000-000000000002"
    with session_scope() as s:
        first = audit.append(s, other, "intake", "api", {"x": 1})
        s.commit()
        assert (first.seq, first.prev_hash) == (1, audit.GENESIS)
    tamper("UPDATE audit_events SET kind = 'forged' WHERE job_id = :j AND seq = 1", j=chain)

    with session_scope() as s:
        assert audit.verify_job(s, other) is None
        assert [b.job_id for b in verify.whole_trail(s)] == [chain]


def test_canonical_json_is_key_order_independent() -> None:
    a = {"b": 1, "a": {"d": [1, {"y": 2, "x": 3}], "c": "é"}}
    b = {"a": {"c": "é", "d": [1, {"x": 3, "y": 2}]}, "b": 1}

    assert audit.canonical_json(a) == audit.canonical_json(b)
    assert audit.canonical_json(a) == '{"a":{"c":"é","d":[1,{"x":3,"y":2}]},"b":1}'
    assert audit.event_hash(audit.GENESIS, JOB, 1, "k", "x", a) == audit.event_hash(
        audit.GENESIS, JOB, 1, "k", "x", b
    )


def test_canonical_json_still_tells_values_and_list_order_apart() -> None:
    assert audit.canonical_json({"a": 1}) != audit.canonical_json({"a": "1"})
    assert audit.canonical_json([1, 2]) != audit.canonical_json([2, 1])
