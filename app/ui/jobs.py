"""The jobs as the operators' pages list them: every job the principal may see, newest first,
searched and filtered, paginated in SQL.

A page costs a fixed number of queries whatever the number of jobs: the count, the page's
jobs, their model spend (summed in SQL, as the audit story counts it) and the reasons of
their open escalations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, lazyload

from app.audit.story import model_spend
from app.identity.apikeys import Principal
from app.identity.visibility import visible_jobs
from app.jobs import lifecycle
from app.models import Escalation, EscalationStatus, Job, as_utc
from app.ui.queue import PER_PAGE, search
from app.workflows import registry

STATUSES = sorted(lifecycle.ACTIVE | lifecycle.TERMINAL | {lifecycle.ESCALATED, lifecycle.PAUSED})


@dataclass(frozen=True)
class JobFilter:
    """What the operator asked the jobs page for (from the page's query string)."""

    q: str = ""
    status: str = ""
    workflow: str = ""
    page: int = 1

    def query(self, **changes: Any) -> dict[str, Any]:
        """The filter as query parameters, with `changes` applied (for links)."""
        values = {"q": self.q, "status": self.status, "workflow": self.workflow, "page": self.page}
        values.update(changes)
        return {k: v for k, v in values.items() if v not in ("", None, 1)}


@dataclass(frozen=True)
class JobRow:
    """One job as a line of the jobs page."""

    id: str
    workflow: str
    subject: str
    status: str
    # Why it waits for a person, when it is escalated.
    reason: str | None
    model_usd: Decimal
    created_at: datetime | None
    updated_at: datetime | None


@dataclass
class JobsPage:
    """One page of jobs and the total that matched."""

    rows: list[JobRow]
    total: int
    page: int
    pages: int
    workflows: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=lambda: list(STATUSES))


def _matching(principal: Principal, wanted: JobFilter) -> Select[Job]:
    query = select(Job).where(*visible_jobs(principal))
    if wanted.workflow:
        query = query.where(Job.workflow == wanted.workflow)
    if wanted.status:
        query = query.where(Job.status == wanted.status)
    if wanted.q.strip():
        query = query.where(search(wanted.q))
    return query


def _open_reasons(session: Session, job_ids: list[str]) -> dict[str, str]:
    """The reason of each job's latest open escalation."""
    found: dict[str, str] = {}
    for job_id, reason in session.execute(
        select(Escalation.job_id, Escalation.reason)
        .where(Escalation.job_id.in_(job_ids), Escalation.status == EscalationStatus.OPEN)
        .order_by(Escalation.id)
    ):
        found[job_id] = reason
    return found


def page(session: Session, principal: Principal, wanted: JobFilter) -> JobsPage:
    """The jobs page the operator asked for, within what the principal may see."""
    matching = _matching(principal, wanted)
    total = session.scalar(select(func.count()).select_from(matching.subquery())) or 0
    pages = max(1, -(-total // PER_PAGE))
    number = min(max(1, wanted.page), pages)
    jobs = session.scalars(
        # The plan's steps are not shown here: not loaded with every job.
        matching.options(lazyload(Job.steps))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(PER_PAGE)
        .offset((number - 1) * PER_PAGE)
    ).all()
    ids = [job.id for job in jobs]
    spend = model_spend(session, ids)
    reasons = _open_reasons(session, ids) if ids else {}
    return JobsPage(
        rows=[
            JobRow(
                id=job.id,
                workflow=job.workflow,
                subject=f"{job.source}:{job.external_id}",
                status=job.status,
                reason=reasons.get(job.id) if job.status == lifecycle.ESCALATED else None,
                model_usd=spend.get(job.id, Decimal(0)),
                created_at=as_utc(job.created_at),
                updated_at=as_utc(job.updated_at),
            )
            for job in jobs
        ],
        total=total,
        page=number,
        pages=pages,
        workflows=sorted(
            principal.workflows if principal.workflows is not None else registry.workflows()
        ),
    )
