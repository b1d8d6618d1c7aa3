"""What a caller may see: the jobs (and so the escalations) its key's role and scope allow.

One rule, in two forms that must agree: `may_see` for one loaded job, `visible_jobs` as SQL
conditions for lists. Requesters see the jobs they submitted; a scoped key sees only its
workflows' jobs; an unscoped reviewer or admin sees every job.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement

from app.identity.apikeys import Principal
from app.models import Job


def _owner(principal: Principal) -> str | None:
    # Requesters are other systems: each sees its own submissions, not its neighbours'.
    return principal.actor if principal.role == "requester" else None


def may_see(principal: Principal, job: Job) -> bool:
    """Whether the caller may see (and, with the role for it, act on) this job."""
    owner = _owner(principal)
    return principal.covers(job.workflow) and (owner is None or job.submitted_by == owner)


def visible_jobs(principal: Principal) -> list[ColumnElement[bool]]:
    """`may_see` as WHERE conditions on `Job` (empty: every job)."""
    conditions: list[ColumnElement[bool]] = []
    if principal.workflows is not None:
        conditions.append(Job.workflow.in_(sorted(principal.workflows)))
    owner = _owner(principal)
    if owner is not None:
        conditions.append(Job.submitted_by == owner)
    return conditions
