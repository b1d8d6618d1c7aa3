"""Bulk approval: many items approved in one go, each still bound to its exact action.

Only items a single reviewer may approve as they stand take part: open, approvable, with no
failed check and no doubt from the soft check, below the two-person threshold, not the
reviewer's own, not claimed by someone else, and whose action hash is the one the reviewer
saw on the page. Each gets its own token through `app.human.decisions`, in its own
transaction, so one refusal does not undo the others; the rest are skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.errors import ConflictError, Forbidden, InputError
from app.human import decisions
from app.identity.apikeys import Principal
from app.ui import item as items
from app.ui.queue import BULK_REASONS


@dataclass
class BulkResult:
    """What a bulk approval did: the items approved, and the ones skipped with why."""

    approved: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)


def why_not(found: items.Item, actor: str) -> str | None:
    """Why this item cannot be approved in bulk (None: it can)."""
    if not found.open:
        return f"already decided ({found.esc.decision or found.esc.status})"
    if found.blocked:
        return found.blocked
    if found.proposed is None or not found.can_approve:
        return f"{found.esc.reason} items are not approved as they are"
    if found.esc.reason not in BULK_REASONS:
        return f"{found.esc.reason}: decide it on its own page, with its evidence"
    if any(not c.ok for c in found.checks):
        return "a verifier rule failed on it"
    holder = found.claim_holder(items.now())
    if holder and holder != actor:
        return f"claimed by {holder}"
    if found.two_person_above is not None and _needs_two(found):
        return f"above {found.two_person_above}: two reviewers approve it, on its own page"
    return None


def _needs_two(found: items.Item) -> bool:
    tool = found.proposed.tool if found.proposed else ""
    return decisions.needs_two_reviewers(found.job, tool, found.step_args)


def approve(
    session: Session, selected: list[tuple[int, str]], principal: Principal, actor: str
) -> BulkResult:
    """Approve each (escalation id, action hash the reviewer saw) that may be approved in
    bulk; each decision is committed on its own."""
    result = BulkResult()
    for esc_id, seen_hash in selected:
        found = items.load(session, esc_id, principal)
        if found is None:
            result.skipped.append((esc_id, "not found"))
            continue
        reason = why_not(found, actor)
        if reason is None and found.proposed and found.proposed.action_hash != seen_hash:
            reason = "the action changed since the page was shown: open it and look again"
        if reason is not None:
            result.skipped.append((esc_id, reason))
            continue
        try:
            decisions.decide(
                session,
                found.esc,
                decisions.Decision(decision="approve", note="approved in bulk"),
                actor,
            )
            session.commit()
        except (InputError, Forbidden, ConflictError) as exc:
            session.rollback()
            result.skipped.append((esc_id, str(exc)))
            continue
        result.approved.append(esc_id)
        result.job_ids.append(found.job.id)
    return result
