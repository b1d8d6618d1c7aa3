"""The execute stage: claim the step's key, re-check policy, call the tool exactly once."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import CursorResult, or_, update
from sqlalchemy.orm import Session

from app.audit import chain
from app.controls import approvals, caps, policy
from app.controls.calls import CallRecorder
from app.errors import ConflictError, EscalationRequired, RetryableError, StaleJob
from app.jobs import lifecycle
from app.models import Job, PlanStep, StepStatus, utcnow
from app.settings import get_settings
from app.stages.runner import JobView, agent_actor
from app.stages.verify_proposal import approved
from tools.catalog import get_tool


def downstream_key(step_key: str) -> str:
    """The key sent downstream (Stripe's Idempotency-Key), derived from the step's key."""
    return "opsgate-" + step_key.replace(":", "-")


def claim_lease() -> timedelta:
    """How long a claim protects a step in flight before another delivery may take it over."""
    return timedelta(seconds=get_settings().claim_lease)


@dataclass(frozen=True)
class Claim:
    """The step this delivery holds, as plain data."""

    step_pk: int
    step_id: str
    revision: int
    tool: str
    args: dict[str, Any]
    args_hash: str
    key: str
    token: str
    attempt: int
    stored_result: dict[str, Any] | None
    approval: dict[str, Any] | None = None


def claim_step(session: Session, job: Job) -> Claim:
    """Claim the current step in the database before any side effect.

    Only one delivery holds a step at a time: the UPDATE matches a pending step, or one whose
    earlier claim outlived its lease (that worker died). A live claim elsewhere means retry.
    """
    step = job.steps[job.current_step]
    # The task's log context (bound in the Celery signal handlers) learns the step here.
    structlog.contextvars.bind_contextvars(step_id=step.step_id)

    def held(token: str, attempt: int, result: dict[str, Any] | None) -> Claim:
        return Claim(
            step.id,
            step.step_id,
            step.revision,
            step.tool,
            dict(step.args),
            step.args_hash,
            step.idempotency_key,
            token,
            attempt,
            result,
            approvals.latest_token(session, step.id),
        )

    if step.status == StepStatus.SUCCEEDED:
        return held("", step.attempts, step.result)
    now, attempts = utcnow(), step.attempts
    token = uuid.uuid4().hex
    outcome: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(PlanStep)
        .where(
            PlanStep.id == step.id,
            or_(
                PlanStep.status == StepStatus.PENDING,
                PlanStep.status == StepStatus.FAILED,
                (PlanStep.status == StepStatus.CLAIMED)
                & (PlanStep.claimed_at < now - claim_lease()),
            ),
        )
        .values(
            status=StepStatus.CLAIMED,
            claimed_at=now,
            attempts=PlanStep.attempts + 1,
            claim_token=token,
        )
        .execution_options(synchronize_session=False)
    )
    if not outcome.rowcount:
        raise RetryableError(
            f"step {step.step_id} of job {job.id} is in flight elsewhere",
            retry_after=claim_lease().total_seconds() / 3,
        )
    return held(token, attempts + 1, None)


@dataclass(frozen=True)
class Executed:
    """The downstream answer, and the decision that let the call out (None on a replay)."""

    result: dict[str, Any]
    decision: policy.Decision | None


def within_daily_caps(
    job: JobView, claim: Claim, step: dict[str, Any], decision: policy.Decision
) -> policy.Decision:
    """Reserve an autonomous action's amount against its daily caps; over a cap it needs a
    human's approval like any action over its autonomy (an approved one goes ahead)."""
    tool_policy = policy.workflow_policy(job.workflow)[0].tools.get(claim.tool)
    amount = claim.args.get("amount")
    if tool_policy is None or tool_policy.daily_caps is None or not isinstance(amount, int):
        return decision
    currency = str(claim.args.get("currency", "")).lower()
    found = caps.scopes_for(
        job.workflow, claim.tool, job.requester, tool_policy.daily_caps, currency
    )
    over = caps.reserve(claim.key, found, currency, amount)
    if over is None:
        return decision
    needs = replace(
        decision,
        outcome="approval_required",
        rule=over.rule,
        detail=f"{claim.tool} of {amount} {currency} would take {over.scope} past its daily "
        f"cap of {over.cap} (used {over.used})",
        evidence={"cap": over.cap, "used": over.used, "scope": over.scope, "amount": amount},
    )
    return approved(job.id, step, needs)


class ExecuteStage:
    """Stage `execute`: ready -> executed."""

    name = "execute"
    status = lifecycle.READY

    def prepare(self, session: Session, job: Job) -> Claim:
        return claim_step(session, job)

    def work(self, job: JobView, claim: Claim, rec: CallRecorder) -> Executed:
        if claim.stored_result is not None:
            return Executed(claim.stored_result, None)  # replay: the effect already happened
        decision = policy.decide(job.workflow, claim.tool, claim.args, job.id)
        if decision.outcome == "block":
            raise EscalationRequired(
                "policy_blocked",
                decision.detail,
                {
                    "tool": claim.tool,
                    "step_id": claim.step_id,
                    "rule": decision.rule,
                    "policy_version": decision.policy_version,
                },
            )
        step = {
            "step_id": claim.step_id,
            "revision": claim.revision,
            "tool": claim.tool,
            "args": claim.args,
            "approval": claim.approval,
        }
        if decision.outcome == "approval_required":
            # Re-checked right before the call: a token for other arguments, another step or
            # an older policy version is refused here, and the refusal is the evidence.
            decision = approved(job.id, step, decision)
        else:
            decision = within_daily_caps(job, claim, step, decision)
        get_tool(claim.tool)  # unknown tools fail before any call
        try:
            return Executed(
                rec.tool(claim.tool, claim.args, key=downstream_key(claim.key)), decision
            )
        except ConflictError as exc:
            raise EscalationRequired(
                "tool_error",
                str(exc),
                {"kind": "idempotency_conflict", "tool": claim.tool, "key": claim.key},
            ) from exc

    def abandon(self, session: Session, claim: Claim) -> None:
        """Give the claim back so the retry (same key) may take the step at once."""
        if claim.token:
            session.execute(
                update(PlanStep)
                .where(
                    PlanStep.id == claim.step_pk,
                    PlanStep.claim_token == claim.token,
                    PlanStep.status == StepStatus.CLAIMED,
                )
                .values(status=StepStatus.FAILED)
            )

    def apply(self, session: Session, job: Job, claim: Claim, done: Executed) -> None:
        result = done.result
        if done.decision is not None:
            # The executor's own policy decision, right before the call, is on the record too.
            chain.append(session, job.id, "policy_decision", "policy", asdict(done.decision))
        step = session.get(PlanStep, claim.step_pk)
        assert step is not None
        if step.status != StepStatus.SUCCEEDED:
            if step.claim_token != claim.token:
                raise StaleJob(f"step {claim.step_id} was claimed by another delivery")
            step.status, step.result, step.error = StepStatus.SUCCEEDED, result, None
            step.completed_at = utcnow()
        chain.append(
            session,
            job.id,
            "step_executed",
            agent_actor(),
            {
                "step": claim.step_id,
                "tool": claim.tool,
                "args_hash": claim.args_hash,
                "idempotency_key": claim.key,
                "service_identity": get_tool(claim.tool).service_identity,
                "result_id": result.get("id") or (result.get("audit") or {}).get("id"),
                "attempt": claim.attempt,
                "approval_id": (claim.approval or {}).get("id"),
            },
        )
        if claim.approval is not None:
            approvals.mark_used(session, claim.approval["id"])
        lifecycle.transition(
            session,
            job,
            lifecycle.EXECUTED,
            actor=agent_actor(),
            reason=f"{claim.step_id} {claim.tool} done",
        )
