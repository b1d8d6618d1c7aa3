"""The global chain of checkpoints that anchors every job chain's head.

A job chain alone proves its events were not edited in the middle, but not that its last
events (or the whole job) were not deleted, nor that someone did not rewrite it from the
start. Checkpoints close that gap: each lists the heads (seq, hash) of the chains that grew
since the previous checkpoint and is hash-linked to it. Verification replays the checkpoints
and requires every anchored head to still be there, unchanged.

Events appended after the newest checkpoint are not anchored yet; beat takes a checkpoint
every OPSGATE_AUDIT_CHECKPOINT_SECONDS, and each checkpoint's hash is logged, so a copy of
the anchors lives outside the database too (a rewritten checkpoint chain would not match
the logged hashes; `opsgate audit verify --anchor HASH` checks one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.chain import GENESIS, ChainBreak, canonical_json, sha256_hex
from app.models import AuditCheckpoint, AuditEvent, AuditHead, as_utc, utcnow

log = structlog.get_logger(__name__)

CHECKPOINTS = "(checkpoints)"
# Chains touched this long before the newest checkpoint are looked at again: a transaction
# that committed late, after that checkpoint read the table, is still anchored.
_LOOKBACK = timedelta(minutes=10)


def checkpoint_hash(prev_hash: str, seq: int, heads: dict[str, Any], at: str) -> str:
    """The hash of one checkpoint, covering its predecessor's."""
    return sha256_hex(prev_hash + canonical_json({"seq": seq, "heads": heads, "at": at}))


def take(session: Session) -> AuditCheckpoint | None:
    """Anchor every chain whose head moved since the last checkpoint (the caller commits);
    None when nothing moved. Two racing callers collide on the unique seq; one wins."""
    last = session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
    ).first()
    since = None if last is None else last.at - _LOOKBACK
    touched = select(AuditEvent.job_id).distinct()
    if since is not None:
        touched = touched.where(AuditEvent.at >= since)
    latest = (
        select(AuditEvent.job_id, func.max(AuditEvent.seq).label("seq"))
        .where(AuditEvent.job_id.in_(touched))
        .group_by(AuditEvent.job_id)
        .subquery()
    )
    rows = session.execute(
        select(AuditEvent.job_id, AuditEvent.seq, AuditEvent.hash).join(
            latest, (AuditEvent.job_id == latest.c.job_id) & (AuditEvent.seq == latest.c.seq)
        )
    ).all()
    known = {
        h.job_id: (h.seq, h.hash)
        for h in session.scalars(
            select(AuditHead).where(AuditHead.job_id.in_([r.job_id for r in rows]))
        )
    }
    heads: dict[str, list[Any]] = {
        job_id: [seq, digest] for job_id, seq, digest in rows if known.get(job_id) != (seq, digest)
    }
    if not heads:
        return None
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.hash
    now = utcnow()
    at = now.isoformat()
    point = AuditCheckpoint(
        seq=seq, heads=heads, prev_hash=prev, hash=checkpoint_hash(prev, seq, heads, at), at=now
    )
    session.add(point)
    for job_id, (head_seq, digest) in heads.items():
        row = session.get(AuditHead, job_id)
        if row is None:
            session.add(AuditHead(job_id=job_id, seq=head_seq, hash=digest))
        else:
            row.seq, row.hash = head_seq, digest
    session.flush()
    log.info("audit.checkpoint", seq=seq, hash=point.hash, chains=len(heads))
    return point


@dataclass(frozen=True)
class Anchored:
    """What the checkpoint chain anchors: each chain's newest anchored head."""

    heads: dict[str, tuple[int, str]]
    checkpoints: int
    hashes: frozenset[str]


def replay(session: Session) -> tuple[Anchored, list[ChainBreak]]:
    """Walk the checkpoint chain, checking each link; the heads it anchors, and any break."""
    heads: dict[str, tuple[int, str]] = {}
    hashes: set[str] = set()
    prev, expected, breaks = GENESIS, 1, []
    points = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))
    for point in points:
        if point.seq != expected:
            breaks.append(ChainBreak(CHECKPOINTS, expected, f"checkpoint {expected} is missing"))
            break
        if point.prev_hash != prev:
            breaks.append(ChainBreak(CHECKPOINTS, point.seq, "previous-hash link does not match"))
            break
        at = _at_text(point)
        if checkpoint_hash(prev, point.seq, point.heads, at) != point.hash:
            breaks.append(
                ChainBreak(CHECKPOINTS, point.seq, "checkpoint content does not match its hash")
            )
            break
        for job_id, (seq, digest) in point.heads.items():
            heads[job_id] = (int(seq), str(digest))
        hashes.add(point.hash)
        prev, expected = point.hash, expected + 1
    return Anchored(heads, expected - 1, frozenset(hashes)), breaks


def _at_text(point: AuditCheckpoint) -> str:
    # SQLite hands datetimes back without a zone; the hash was computed over the aware value.

    moment = as_utc(point.at)
    assert moment is not None
    return moment.isoformat()


def verify_heads(
    session: Session, anchored: Anchored, job_id: str | None = None
) -> list[ChainBreak]:
    """Every anchored head (of one job, or all) must still be in its chain, unchanged."""
    wanted = (
        anchored.heads
        if job_id is None
        else {k: v for k, v in anchored.heads.items() if k == job_id}
    )
    breaks = []
    for chain, (seq, digest) in sorted(wanted.items()):
        found = session.scalar(
            select(AuditEvent.hash).where(AuditEvent.job_id == chain, AuditEvent.seq == seq)
        )
        if found is None:
            breaks.append(
                ChainBreak(chain, seq, f"event {seq} was anchored by a checkpoint and is gone")
            )
        elif found != digest:
            breaks.append(
                ChainBreak(chain, seq, f"event {seq} differs from the one a checkpoint anchored")
            )
    return breaks
