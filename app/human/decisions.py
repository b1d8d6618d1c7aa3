"""Reviewers deciding escalations: approve (with a signed token for the exact action), edit
(approve corrected arguments), revise (correct the arguments and have them verified before
anyone approves) or reject with a reason code. Exactly one decision per escalation; the
approver is never the requester; above the tool's two-person threshold two different
reviewers must approve."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import chain
from app.controls import approvals, policy
from app.errors import ConflictError, Forbidden, InputError, PermanentError
from app.human import revisions
from app.human.escalation import APPROVABLE
from app.jobs import lifecycle
from app.models import (
    Escalation,
    EscalationStatus,
    Job,
    PlanStep,
    StepStatus,
    as_utc,
    utcnow,
)
from app.settings import get_settings
from tools.catalog import get_tool

# A revise may also correct what failed its facts: the new revision is verified again before
# anyone is asked to approve it, so nothing unverified gets an approval.
REVISABLE = APPROVABLE | {"verification_failed"}

REJECT_REASONS = (
    "wrong_action",
    "wrong_amount",
    "wrong_customer",
    "policy_violation",
    "duplicate",
    "fraud_suspected",
    "other",
)


class Decision(BaseModel):
    """A reviewer's decision (the reviewer is the authenticated caller, never the body)."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "edit", "reject", "revise"]
    # For "edit" and "revise": the step's arguments as the reviewer corrected them (the whole
    # set). An edit approves them at once; a revise has them verified first.
    args: dict[str, Any] | None = None
    reason_code: Literal[REJECT_REASONS] | None = None  # type: ignore[valid-type]
    note: str = Field("", max_length=4000)


def _step(session: Session, esc: Escalation) -> PlanStep:
    step_id = esc.evidence.get("step_id")
    step = session.scalar(
        select(PlanStep)
        .where(PlanStep.job_id == esc.job_id, PlanStep.step_id == step_id)
        .order_by(PlanStep.revision.desc())
    )
    if step is None:
        raise InputError(f"escalation {esc.id} names no step of its job; it cannot be approved")
    return step


def two_person_threshold(job: Job, tool: str, args: dict[str, Any]) -> int | None:
    """The amount (minor units, in the call's currency) above which two reviewers approve."""
    tool_policy = policy.workflow_policy(job.workflow)[0].tools.get(tool)
    if tool_policy is None:
        return None
    return tool_policy.two_person_above.get(str(args.get("currency", "")).lower())


def person(actor: str) -> str:
    """The person behind an actor: `key:alice@example.com`, `sso:alice@example.com` and
    `cli:alice@host` are alice's (API keys of reviewers are named for the person who holds
    them; console sign-ins through the OIDC provider are named by the configured claim)."""
    kind, _, name = actor.partition(":")
    if kind == "cli":
        name = name.rsplit("@", 1)[0]
    elif kind not in ("key", "sso"):
        name = actor
    return name.strip().lower()


def needs_two_reviewers(job: Job, tool: str, args: dict[str, Any]) -> bool:
    """Whether the call's amount is above its tool's two-person threshold."""
    threshold = two_person_threshold(job, tool, args)
    amount = args.get("amount")
    return threshold is not None and isinstance(amount, int) and amount > threshold


def same_person(actor: str, requester: str) -> bool:
    """Whether the actor is the person who asked for the job (separation of duties)."""
    who, wanted = person(actor), person(requester)
    return who == wanted or (bool(who) and "@" in wanted and who == wanted.split("@", 1)[0])


def decide(session: Session, esc: Escalation, body: Decision, actor: str) -> dict[str, Any]:
    """Apply one reviewer's decision; returns what happened (the caller commits)."""
    job = session.get(Job, esc.job_id)
    assert job is not None
    if esc.status != EscalationStatus.OPEN or job.status != lifecycle.ESCALATED:
        raise ConflictError(
            f"escalation {esc.id} is already decided ({esc.decision or esc.status})"
        )
    if same_person(actor, job.requester):
        raise Forbidden("separation of duties: the requester cannot decide their own job")
    now = utcnow()
    claimed_until = as_utc(esc.claimed_until)
    if esc.claimed_by and esc.claimed_by != actor and claimed_until and claimed_until > now:
        raise ConflictError(
            f"escalation {esc.id} is claimed by {esc.claimed_by} until {claimed_until.isoformat()}"
        )
    if body.decision == "reject":
        if body.reason_code is None:
            raise InputError(f"a rejection needs reason_code, one of {', '.join(REJECT_REASONS)}")
        _close(session, esc, "reject", actor, f"{body.reason_code}: {body.note}".strip(": "))
        lifecycle.transition(
            session, job, lifecycle.REJECTED, actor=actor, reason=f"rejected: {body.reason_code}"
        )
        chain.append(
            session,
            job.id,
            "decision",
            actor,
            {"escalation": esc.id, "decision": "reject", "reason_code": body.reason_code},
        )
        return {"escalation_id": esc.id, "decision": "reject", "job_status": lifecycle.REJECTED}
    if body.decision == "revise":
        return _revise_and_reverify(session, job, esc, body, actor)
    if esc.reason not in APPROVABLE:
        raise InputError(
            f"escalation {esc.id} is {esc.reason}: only {', '.join(sorted(APPROVABLE))} "
            "can be approved (retry, resume or reject the others)"
        )
    step = _step(session, esc)
    restated = revise(session, job, step, body.args, actor) if body.decision == "edit" else []
    approvers = [a for a in (esc.approved_by or []) if a != actor] + [actor]
    if needs_two_reviewers(job, step.tool, step.args) and len(approvers) < 2:
        esc.approved_by = approvers
        chain.append(
            session,
            job.id,
            "decision",
            actor,
            {"escalation": esc.id, "decision": "approve", "awaiting": "second reviewer"},
        )
        return {"escalation_id": esc.id, "decision": "approve", "awaiting": "second_reviewer"}
    _, version = policy.workflow_policy(job.workflow)
    approval = approvals.create(
        session,
        job_id=job.id,
        escalation_id=esc.id,
        step=step,
        policy_version=version,
        approvers=approvers,
    )
    esc.approved_by = approvers
    _close(session, esc, body.decision, actor, body.note)
    target = job.resume_status if job.resume_status in lifecycle.ACTIVE else lifecycle.PLANNED
    if body.decision == "edit":
        target = lifecycle.PLANNED  # edited arguments are verified again, facts included
    lifecycle.transition(
        session, job, target, actor=actor, reason=f"approved by {', '.join(approvers)}"
    )
    chain.append(
        session,
        job.id,
        "approval",
        actor,
        {
            "escalation": esc.id,
            "approval_id": approval.id,
            "approvers": approvers,
            "step": step.step_id,
            "revision": step.revision,
            "action_hash": approval.action_hash,
            "key_id": approval.key_id,
            "policy_version": version,
        },
    )
    return {
        "escalation_id": esc.id,
        "decision": body.decision,
        "job_status": target,
        "approval_id": approval.id,
        "approvers": approvers,
        # Later steps restated from an edit (each a new revision); empty for an approve.
        "restated_steps": restated,
    }


def _revise_and_reverify(
    session: Session, job: Job, esc: Escalation, body: Decision, actor: str
) -> dict[str, Any]:
    """A reviewer's revise: the step's next revision (later steps restated, as for an edit),
    no approval; the job goes back to be verified, and when the new revision passes its facts
    a new escalation asks for its approval."""
    if esc.reason not in REVISABLE:
        raise InputError(
            f"escalation {esc.id} is {esc.reason}: only {', '.join(sorted(REVISABLE))} "
            "can be revised (retry, resume or reject the others)"
        )
    step = _step(session, esc)
    restated = revise(session, job, step, body.args, actor)
    _close(session, esc, "revise", actor, body.note)
    lifecycle.transition(
        session,
        job,
        lifecycle.PLANNED,
        actor=actor,
        reason=f"revised by {actor}: re-verifying revision {step.revision}",
    )
    chain.append(
        session,
        job.id,
        "decision",
        actor,
        {
            "escalation": esc.id,
            "decision": "revise",
            "step": step.step_id,
            "revision": step.revision,
        },
    )
    return {
        "escalation_id": esc.id,
        "decision": "revise",
        "job_status": lifecycle.PLANNED,
        "step": step.step_id,
        "revision": step.revision,
        "restated_steps": restated,
    }


def revise(
    session: Session, job: Job, step: PlanStep, args: dict[str, Any] | None, actor: str
) -> list[str]:
    """Make the step's next revision with the reviewer's arguments: a new idempotency key,
    nothing carried over from the old one (which never ran: approvals stop before the call).
    The edit then flows through the plan: later pending steps that state a changed value are
    restated from it, each a revision of its own (app/human/revisions.py). Returns their ids."""

    if not args:
        raise InputError("an edit needs args: the step's corrected arguments")
    try:
        parsed = get_tool(step.tool).parse_args(args).model_dump(mode="json")
    except PermanentError as exc:
        raise InputError(f"edited arguments for {step.tool}: {exc}") from exc
    if step.status not in (StepStatus.PENDING, StepStatus.FAILED):
        raise ConflictError(f"step {step.step_id} is {step.status}; it cannot be edited now")
    before = dict(step.args)
    revisions.new_revision(session, job, step, parsed, actor)
    edit = revisions.Edit.between(step.step_id, step.revision, before, parsed)
    return revisions.restate_later(session, job, step, edit, actor)


def _close(session: Session, esc: Escalation, decision: str, actor: str, note: str) -> None:
    # Conditional: of two reviewers deciding at once, one wins and the other gets a conflict.
    won = session.execute(
        update(Escalation)
        .where(Escalation.id == esc.id, Escalation.status == EscalationStatus.OPEN)
        .values(
            status=EscalationStatus.CLOSED,
            decision=decision,
            decided_by=actor,
            decided_at=utcnow(),
            note=note,
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not won:
        raise ConflictError(f"escalation {esc.id} was decided by someone else")
    session.refresh(esc)


def claim(session: Session, esc: Escalation, actor: str) -> dict[str, Any]:
    """Take an open escalation for `review_claim` seconds, so two people do not work it at
    once (the same reviewer may renew; a claim that ran out can be taken by anyone)."""
    now = utcnow()
    until = now + timedelta(seconds=get_settings().review_claim)
    won = session.execute(
        update(Escalation)
        .where(
            Escalation.id == esc.id,
            Escalation.status == EscalationStatus.OPEN,
            (Escalation.claimed_by.is_(None))
            | (Escalation.claimed_by == actor)
            | (Escalation.claimed_until < now),
        )
        .values(claimed_by=actor, claimed_until=until)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.refresh(esc)
    if not won:
        if esc.status != "open":
            raise ConflictError(
                f"escalation {esc.id} is already decided ({esc.decision or esc.status})"
            )
        raise ConflictError(f"escalation {esc.id} is claimed by {esc.claimed_by}")
    return {"escalation_id": esc.id, "claimed_by": actor, "claimed_until": until.isoformat()}


def expire_overdue(session: Session) -> list[str]:
    """Close approvable escalations past their deadline; their jobs end `rejected` and the
    action is not taken. Returns the job ids (the caller commits, then publishes)."""
    overdue = session.scalars(
        select(Escalation).where(
            Escalation.status == EscalationStatus.OPEN, Escalation.deadline < utcnow()
        )
    ).all()
    expired: list[str] = []
    for esc in overdue:
        job = session.get(Job, esc.job_id)
        if job is None or job.status != lifecycle.ESCALATED:
            continue
        try:
            _close(session, esc, "expire", "system:reaper", "not decided before the deadline")
        except ConflictError:
            continue
        lifecycle.transition(
            session,
            job,
            lifecycle.REJECTED,
            actor="system:reaper",
            reason=f"expired: {esc.reason} not decided before {as_utc(esc.deadline)}",
        )
        chain.append(
            session,
            job.id,
            "decision",
            "system:reaper",
            {"escalation": esc.id, "decision": "expire"},
        )
        expired.append(job.id)
    return expired
