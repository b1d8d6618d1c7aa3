"""app/audit/checkpoints.py and app/audit/verify.py: checkpoints anchor every chain's head, so
a deleted job, a deleted last event, a chain rewritten from its start and an edited
checkpoint are all caught by `verify`."""

from __future__ import annotations

import json

from sqlalchemy import text

from app.audit import chain as audit
from app.audit import checkpoints, verify
from app.core.db import session_scope
from tests.support.audit import checkpoint, tamper


def test_deleted_last_event_is_detected(chain: str) -> None:
    # Given the chain's head anchored by a checkpoint
    checkpoint()
    # When its last event is deleted (the job chain alone still verifies)
    tamper("DELETE FROM audit_events WHERE job_id = :j AND seq = 4", j=chain)

    # Then the anchor names what is gone
    with session_scope() as s:
        assert audit.verify_job(s, chain) is None
        [broken] = verify.whole_trail(s)
        assert (broken.job_id, broken.seq) == (chain, 4) and "gone" in broken.problem
        assert verify.one_job(s, chain) == [broken]


def test_a_deleted_job_is_detected(chain: str) -> None:
    checkpoint()
    tamper("DELETE FROM audit_events WHERE job_id = :j", j=chain)

    with session_scope() as s:
        [broken] = verify.whole_trail(s)
    assert broken.job_id == chain and "gone" in broken.problem


def test_a_chain_rewritten_from_the_start_is_detected(chain: str) -> None:
    # Given an anchored chain, then every event re-hashed consistently with a forged payload
    checkpoint()
    with session_scope() as s:
        rows = s.execute(
            text(
                "SELECT seq, kind, actor, payload FROM audit_events WHERE job_id = :j ORDER BY seq"
            ),
            {"j": chain},
        ).all()
    prev = audit.GENESIS
    for row in rows:
        payload = json.loads(row.payload)
        if row.seq == 3:
            payload["amount"] = 1
        digest = audit.event_hash(prev, chain, row.seq, row.kind, row.actor, payload)
        tamper(
            "UPDATE audit_events SET payload = :p, prev_hash = :prev, hash = :h "
            "WHERE job_id = :j AND seq = :seq",
            p=json.dumps(payload),
            prev=prev,
            h=digest,
            j=chain,
            seq=row.seq,
        )
        prev = digest
    # Then the job chain alone holds, but the anchored head does not
    with session_scope() as s:
        assert audit.verify_job(s, chain) is None
        [broken] = verify.whole_trail(s)
    assert (broken.seq, "differs" in broken.problem) == (4, True)


def test_an_edited_checkpoint_is_detected(chain: str) -> None:
    checkpoint()
    tamper("UPDATE audit_checkpoints SET heads = '{}' WHERE seq = 1")

    with session_scope() as s:
        [broken] = verify.whole_trail(s)
    assert (broken.job_id, broken.seq) == (checkpoints.CHECKPOINTS, 1)


def test_checkpoints_anchor_only_what_moved(chain: str) -> None:
    checkpoint()
    with session_scope() as s:
        # Nothing moved: no new checkpoint
        assert checkpoints.take(s) is None
        audit.append(s, chain, "transition", "agent", {"from": "ready", "to": "executed"})
        point = checkpoints.take(s)
        s.commit()
        assert (
            point is not None
            and point.seq == 2
            and point.heads == {chain: [5, point.heads[chain][1]]}
        )
        anchored, breaks = checkpoints.replay(s)
    assert breaks == [] and anchored.heads[chain][0] == 5 and anchored.checkpoints == 2
