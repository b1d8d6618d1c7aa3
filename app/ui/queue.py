"""The human queue as the console lists it: open escalations, oldest first, filtered and
paginated in SQL, with what a reviewer needs to pick the next one.

A page costs a fixed number of queries whatever the queue's length: the count, the counts per
reason, the page's rows (escalation and job together), and the page's plan steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session, lazyload

from app.controls import approvals, policy
from app.core.money import format_minor
from app.human import decisions
from app.identity.apikeys import Principal
from app.identity.visibility import visible_jobs
from app.models import Escalation, EscalationStatus, Job, PlanStep, as_utc, utcnow
from app.workflows import registry
from tools.catalog import get_tool

PER_PAGE = 25
# Reasons whose items a reviewer may approve without opening each one. A plan the soft check
# doubted (low_confidence) is decided on its own page, with its evidence read.
BULK_REASONS = frozenset({"approval_required", "shadow_proposal"})
Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])
Claim = Literal["", "mine", "unclaimed"]


@dataclass(frozen=True)
class QueueFilter:
    """What the reviewer asked the queue for (from the page's query string)."""

    workflow: str = ""
    reason: str = ""
    claim: Claim = ""
    q: str = ""
    page: int = 1

    def query(self, **changes: Any) -> dict[str, Any]:
        """The filter as query parameters, with `changes` applied (for links)."""
        values = {
            "workflow": self.workflow,
            "reason": self.reason,
            "claim": self.claim,
            "q": self.q,
            "page": self.page,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v not in ("", None, 1)}


@dataclass(frozen=True)
class QueueRow:
    """One open escalation as a line of the queue."""

    id: int
    job_id: str
    workflow: str
    reason: str
    detail: str
    subject: str
    tool: str | None
    # The amount at stake ("120.00 USD"), or the tool's risk class when there is none.
    stake: str
    created_at: datetime
    deadline: datetime | None
    claimed_by: str | None
    claimed_until: datetime | None
    # The action hash, when the item may be approved in bulk by this reviewer (the server
    # checks again, and refuses an item whose hash changed since the page was shown).
    bulk_hash: str | None = None

    def age(self, now: datetime) -> timedelta:
        """How long the item has waited."""
        return now - self.created_at

    def due_in(self, now: datetime) -> timedelta | None:
        """Time left before the item expires (negative: overdue), if it has a deadline."""
        return None if self.deadline is None else self.deadline - now

    def claim_holds(self, now: datetime) -> bool:
        """Whether someone holds the item now."""
        return bool(self.claimed_by) and self.claimed_until is not None and self.claimed_until > now


@dataclass
class QueuePage:
    """One page of the queue, its total, and the open items per reason."""

    rows: list[QueueRow]
    total: int
    page: int
    pages: int
    counts: dict[str, int] = field(default_factory=dict)
    workflows: list[str] = field(default_factory=list)


def _scoped(query: Q, principal: Principal) -> Q:
    return query.where(*visible_jobs(principal))


def _filtered(query: Q, wanted: QueueFilter, actor: str, now: datetime) -> Q:
    if wanted.workflow:
        query = query.where(Job.workflow == wanted.workflow)
    if wanted.claim == "mine":
        query = query.where(Escalation.claimed_by == actor, Escalation.claimed_until > now)
    elif wanted.claim == "unclaimed":
        query = query.where(or_(Escalation.claimed_by.is_(None), Escalation.claimed_until <= now))
    if wanted.q.strip():
        query = query.where(search(wanted.q))
    return query


def search(text: str) -> ColumnElement[bool]:
    """A job whose id starts with `text` or whose subject holds it (any case); LIKE's
    wildcards in `text` match themselves."""
    text = text.strip()
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(
        Job.external_id.ilike(f"%{escaped}%", escape="\\"),
        Job.id.startswith(text, autoescape=True),
    )


def _open() -> Select[Escalation, Job]:
    return (
        select(Escalation, Job)
        .join(Job, Job.id == Escalation.job_id)
        .where(Escalation.status == EscalationStatus.OPEN)
        # The plan's steps are read once for the whole page below, not with every job.
        .options(lazyload(Job.steps))
    )


def stake(tool: str | None, args: dict[str, Any] | None) -> str:
    """The amount a step moves, formatted, or its tool's risk class."""
    if tool is None:
        return "-"
    amount, currency = (args or {}).get("amount"), (args or {}).get("currency")
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str):
        try:
            return format_minor(amount, currency)
        except ValueError:
            return f"{amount} {currency.upper()} (minor units)"
    try:
        return get_tool(tool).risk.value
    except KeyError:
        return "unknown tool"


def latest_steps(session: Session, job_ids: list[str]) -> dict[tuple[str, str], PlanStep]:
    """The latest revision of every step of these jobs, by (job id, step id)."""
    found: dict[tuple[str, str], PlanStep] = {}
    if not job_ids:
        return found
    for step in session.scalars(
        select(PlanStep).where(PlanStep.job_id.in_(job_ids)).order_by(PlanStep.revision)
    ):
        found[(step.job_id, step.step_id)] = step
    return found


def _bulk_ready(esc: Escalation, job: Job, step: PlanStep, principal: Principal) -> bool:
    verified = esc.evidence.get("verified") or []
    return (
        esc.reason in BULK_REASONS
        and principal.role in ("reviewer", "admin")
        and not decisions.same_person(principal.actor, job.requester)
        and not decisions.needs_two_reviewers(job, step.tool, step.args)
        and all(isinstance(v, dict) and v.get("ok") for v in verified)
    )


def page(session: Session, principal: Principal, wanted: QueueFilter) -> QueuePage:
    """The queue page the reviewer asked for, within their workflow scope."""
    now = utcnow()
    base = _filtered(_scoped(_open(), principal), wanted, principal.actor, now)
    listed = base.where(Escalation.reason == wanted.reason) if wanted.reason else base
    total = session.scalar(select(func.count()).select_from(listed.subquery())) or 0
    pages = max(1, -(-total // PER_PAGE))
    number = min(max(1, wanted.page), pages)
    counts: dict[str, int] = dict(
        session.execute(
            _filtered(
                _scoped(
                    select(Escalation.reason, func.count())
                    .join(Job, Job.id == Escalation.job_id)
                    .where(Escalation.status == EscalationStatus.OPEN),
                    principal,
                ),
                wanted,
                principal.actor,
                now,
            ).group_by(Escalation.reason)
        ).all()
    )
    found = session.execute(
        listed.order_by(Escalation.created_at, Escalation.id)
        .limit(PER_PAGE)
        .offset((number - 1) * PER_PAGE)
    ).all()
    steps = latest_steps(session, sorted({job.id for _, job in found}))
    rows = []
    for esc, job in found:
        step = steps.get((job.id, str(esc.evidence.get("step_id"))))
        tool = step.tool if step else esc.evidence.get("tool")
        held = esc.claimed_by not in (None, principal.actor) and (
            (as_utc(esc.claimed_until) or now) > now
        )
        rows.append(
            QueueRow(
                id=esc.id,
                job_id=job.id,
                workflow=job.workflow,
                reason=esc.reason,
                detail=esc.detail,
                subject=f"{job.source}:{job.external_id}",
                tool=tool if isinstance(tool, str) else None,
                stake=stake(tool if isinstance(tool, str) else None, step.args if step else None),
                created_at=as_utc(esc.created_at) or now,
                deadline=as_utc(esc.deadline),
                claimed_by=esc.claimed_by,
                claimed_until=as_utc(esc.claimed_until),
                bulk_hash=None
                if step is None or held or not _bulk_ready(esc, job, step, principal)
                else approvals.action_hash(job.id, step, policy.workflow_policy(job.workflow)[1]),
            )
        )
    return QueuePage(
        rows=rows,
        total=total,
        page=number,
        pages=pages,
        counts={str(k): int(v) for k, v in sorted(counts.items())},
        workflows=sorted(
            principal.workflows if principal.workflows is not None else registry.workflows()
        ),
    )
