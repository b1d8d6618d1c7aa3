"""Append-only audit trail, hash-chained per job over canonical JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.models import GENESIS_HASH, AuditEvent, Job, utcnow

GENESIS = GENESIS_HASH
# The chain of events that belong to no job (kill-switch flips, erasures of personal data).
FLEET = "fleet"
# session.info key: each job's chain head as this transaction left it, (next seq, last hash).
_HEADS = "opsgate.audit_heads"


def canonical_json(value: Any) -> str:
    """The one serialization every hash in opsgate is computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of a string."""
    return hashlib.sha256(text.encode()).hexdigest()


def event_hash(
    prev_hash: str, job_id: str, seq: int, kind: str, actor: str, payload: dict[str, Any]
) -> str:
    """Hash of one event, covering the previous event's hash (the chain link)."""
    body = {"job_id": job_id, "seq": seq, "kind": kind, "actor": actor, "payload": payload}
    return sha256_hex(prev_hash + canonical_json(body))


def append(
    session: Session,
    job_id: str,
    kind: str,
    actor: str,
    payload: dict[str, Any],
    *,
    first: bool = False,
) -> AuditEvent:
    """Append one event to the job's chain (the caller commits).

    A concurrent append to the same job collides on the unique (job_id, seq) pair and the
    loser's transaction fails, so the chain can never fork.
    """
    return append_many(session, job_id, [(kind, actor, payload)], first=first)[0]


def append_many(
    session: Session,
    job_id: str,
    events: list[tuple[str, str, dict[str, Any]]],
    *,
    first: bool = False,
) -> list[AuditEvent]:
    """Append (kind, actor, payload) events in order.

    The chain's head comes from the job row when the session holds the job (a stage always
    does), and the new head goes back on the job, in the job's own UPDATE; otherwise the head
    is looked up among the events, and written to the job row with a plain UPDATE. Later
    appends in the same transaction continue from the head this one leaves (kept in
    `session.info`, forgotten on commit and on any rollback, savepoints included). The events
    go to the database in the session's next flush, as one batch.
    """
    heads: dict[str, tuple[int, str]] = session.info.setdefault(_HEADS, {})
    job = _loaded_job(session, job_id)
    if job_id in heads:
        seq, prev = heads[job_id]
    elif first:
        # The caller just created the job, so there is no chain to look up yet.
        seq, prev = 1, GENESIS
    elif job is not None:
        seq, prev = job.audit_seq + 1, job.audit_head
    else:
        # No autoflush: any event of this job still pending in the session went through the
        # cache above, so the head is in the database; flushing here would only split the
        # transaction's writes (the job's UPDATE, these events) into more round trips.
        with session.no_autoflush:
            last = session.execute(
                select(AuditEvent.seq, AuditEvent.hash)
                .where(AuditEvent.job_id == job_id)
                .order_by(AuditEvent.seq.desc())
                .limit(1)
            ).first()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    added = []
    for kind, actor, payload in events:
        now = utcnow()
        body = dict(payload, at=now.isoformat())
        body = json.loads(canonical_json(body))  # store exactly what was hashed
        digest = event_hash(prev, job_id, seq, kind, actor, body)
        event = AuditEvent(
            job_id=job_id,
            seq=seq,
            kind=kind,
            actor=actor,
            payload=body,
            prev_hash=prev,
            hash=digest,
            at=now,
        )
        session.add(event)
        added.append(event)
        seq, prev = seq + 1, digest
    heads[job_id] = (seq, prev)
    if job is not None:
        job.audit_seq, job.audit_head = seq - 1, prev
    elif job_id != FLEET:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(audit_seq=seq - 1, audit_head=prev)
            .execution_options(synchronize_session=False),
            execution_options={"autoflush": False},
        )
    return added


def _loaded_job(session: Session, job_id: str) -> Job | None:
    """The session's job `job_id` with its audit head loaded (no SQL), or None: a job the
    session has read, or one it is creating."""
    found = session.identity_map.get(identity_key(Job, job_id))
    if found is None:
        found = next((o for o in session.new if isinstance(o, Job) and o.id == job_id), None)
    if not isinstance(found, Job) or "audit_seq" in inspect(found).unloaded:
        return None
    return found


def _forget_heads(session: Session, *_: Any) -> None:
    session.info.pop(_HEADS, None)


# A head is only good inside the transaction that read or wrote it.
event.listen(Session, "after_commit", _forget_heads)
event.listen(Session, "after_soft_rollback", _forget_heads)


def first_event_values(
    job_id: str, kind: str, actor: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """The column values of a brand-new job's first event (seq 1, linked to GENESIS), for a
    caller that inserts it with one Core INSERT: a new job has no head to look up."""
    now = utcnow()
    body = json.loads(canonical_json(dict(payload, at=now.isoformat())))  # store what is hashed
    return {
        "job_id": job_id,
        "seq": 1,
        "kind": kind,
        "actor": actor,
        "payload": body,
        "prev_hash": GENESIS,
        "hash": event_hash(GENESIS, job_id, 1, kind, actor, body),
        "at": now,
    }


def reference(value: str) -> str:
    """A stable reference to personal data (a requester, a login) for chained payloads: the
    value itself stays in its own store, where it can be erased."""
    return sha256_hex(value)[:16]


@dataclass(frozen=True)
class ChainBreak:
    """The first link of a job's chain that does not verify."""

    job_id: str
    seq: int
    problem: str


def verify_job(session: Session, job_id: str) -> ChainBreak | None:
    """Recompute one job's chain; return the first broken link, or None if it holds."""
    prev, expected_seq = GENESIS, 1
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.seq)
    )
    for ev in events:
        if ev.seq != expected_seq:
            return ChainBreak(job_id, expected_seq, f"event {expected_seq} is missing")
        if ev.prev_hash != prev:
            return ChainBreak(job_id, ev.seq, "previous-hash link does not match")
        if event_hash(prev, ev.job_id, ev.seq, ev.kind, ev.actor, ev.payload) != ev.hash:
            return ChainBreak(job_id, ev.seq, "event content does not match its hash")
        prev, expected_seq = ev.hash, expected_seq + 1
    return None


def count(session: Session, job_id: str) -> int:
    """Number of audit events recorded for a job."""
    return session.scalar(select(func.count()).where(AuditEvent.job_id == job_id)) or 0
