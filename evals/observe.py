"""What a run reads back from its world's database: how each job ended, and what it cost."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Escalation, Job, ModelCall, as_utc
from app.reporting.kpis import ANSWERED
from evals.cases import Outcome

SETTLED = lifecycle.TERMINAL | {lifecycle.ESCALATED}


@dataclass(frozen=True)
class JobStats:
    """A job's retries, time from submission to its last transition, and model calls."""

    retries: int = 0
    latency_s: float | None = None
    model_answers: int = 0
    model_valid: int = 0
    cost_usd: float = 0.0


def outcomes(job_ids: dict[str, str]) -> tuple[dict[str, Outcome], int]:
    """Each case's outcome (its job's status and latest escalation) and how many settled."""
    with session_scope() as s:
        ids = list(job_ids.values())
        statuses = dict(s.execute(select(Job.id, Job.status).where(Job.id.in_(ids))).all())
        latest = {
            e.job_id: e
            for e in s.scalars(
                select(Escalation).where(Escalation.job_id.in_(ids)).order_by(Escalation.id)
            )
        }
        found = {}
        for case_id, job_id in job_ids.items():
            status = str(statuses.get(job_id, "missing"))
            esc = latest.get(job_id) if status == lifecycle.ESCALATED else None
            evidence = dict(esc.evidence or {}) if esc else None
            found[case_id] = Outcome(
                status=status,
                reason=esc.reason if esc else None,
                rule=(evidence or {}).get("rule") if esc else None,
                detail=esc.detail if esc else "",
                evidence=evidence,
            )
    return found, sum(1 for o in found.values() if o.status in SETTLED)


def wait_settled(
    job_ids: dict[str, str],
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Outcome], bool]:
    """Poll until every job settled or `timeout` passed; (outcomes, timed out)."""
    deadline = time.monotonic() + timeout
    while True:
        found, settled = outcomes(job_ids)
        if progress:
            progress(settled, len(job_ids))
        if settled >= len(job_ids):
            return found, False
        if time.monotonic() > deadline:
            return found, True
        time.sleep(0.5)


def job_stats(job_ids: list[str]) -> dict[str, JobStats]:
    """Retries, latency and model calls per job."""
    with session_scope() as s:
        rows = s.execute(
            select(Job.id, Job.retries, Job.created_at, Job.updated_at).where(Job.id.in_(job_ids))
        ).all()
        calls: dict[str, dict[str, Any]] = {}
        for job_id, outcome, n, cost in s.execute(
            select(
                ModelCall.job_id,
                ModelCall.outcome,
                func.count(),
                func.coalesce(func.sum(ModelCall.cost_usd), 0),
            )
            .where(ModelCall.job_id.in_(job_ids))
            .group_by(ModelCall.job_id, ModelCall.outcome)
        ):
            found = calls.setdefault(job_id, {"answers": 0, "valid": 0, "cost": 0.0})
            found["answers"] += n if outcome in ANSWERED else 0
            found["valid"] += n if outcome == "ok" else 0
            found["cost"] += float(cost)
    stats = {}
    for job_id, retries, created, updated in rows:
        c = calls.get(job_id, {"answers": 0, "valid": 0, "cost": 0.0})
        start, end = as_utc(created), as_utc(updated)
        latency = (end - start).total_seconds() if start and end else None
        stats[job_id] = JobStats(
            retries=int(retries or 0),
            latency_s=latency,
            model_answers=c["answers"],
            model_valid=c["valid"],
            cost_usd=c["cost"],
        )
    return stats
