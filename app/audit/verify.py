"""Verifying the trail: the checkpoint chain, each job's chain, and every head a checkpoint
anchored. Apart from the chain module because it reads both the chain and the checkpoints."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import checkpoints
from app.audit.chain import ChainBreak, verify_job
from app.models import AuditEvent


def whole_trail(session: Session) -> list[ChainBreak]:
    """Verify the checkpoint chain, every job's chain and every anchored head; the first
    break per chain, in chain order (empty when the whole trail holds)."""
    anchored, breaks = checkpoints.replay(session)
    job_ids = session.scalars(select(AuditEvent.job_id).group_by(AuditEvent.job_id)).all()
    found = [b for j in job_ids if (b := verify_job(session, j)) is not None]
    found += checkpoints.verify_heads(session, anchored)
    return breaks + _first_per_chain(found)


def one_job(session: Session, job_id: str) -> list[ChainBreak]:
    """Verify one job's chain and its anchored head, and the checkpoint chain itself."""
    anchored, breaks = checkpoints.replay(session)
    found = [b for b in [verify_job(session, job_id)] if b is not None]
    found += checkpoints.verify_heads(session, anchored, job_id)
    return breaks + _first_per_chain(found)


def _first_per_chain(breaks: list[ChainBreak]) -> list[ChainBreak]:
    first: dict[str, ChainBreak] = {}
    for b in sorted(breaks, key=lambda b: (b.job_id, b.seq)):
        first.setdefault(b.job_id, b)
    return list(first.values())
