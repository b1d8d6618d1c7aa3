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
from app.jobs.steps import StoredStep
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
    """The step this delivery holds: the step, the claim's token (empty on a replay), which
    attempt this is, and the stored result when the effect already happened."""

    step: StoredStep
    token: str
    attempt: int
    stored_result: dict[str, Any] | None


def claim_step(session: Session, job: Job) -> Claim:
    """Claim the current step in the database before any side effect.

    Only one delivery holds a step at a time: the UPDATE matches a pending step, or one whose
    earlier claim outlived its lease (that worker died). A live claim elsewhere means retry.
    """
    step = job.steps[job.current_step]
    # The task's log context (bound in the Celery signal handlers) learns the step here.
    structlog.contextvars.bind_contextvars(step_id=step.step_id)

    def held(token: str, attempt: int, result: dict[str, Any] | None) -> Claim:
        stored = StoredStep.of(step, approvals.latest_token(session, step.id))
        return Claim(stored, token, attempt, result)

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


def within_daily_caps(job: JobView, claim: Claim, decision: policy.Decision) -> policy.Decision:
    """Reserve an autonomous action's amount against its daily caps; over a cap it needs a
    human's approval like any action over its autonomy (an approved one goes ahead)."""
    step = claim.step
    tool_policy = policy.workflow_policy(job.workflow)[0].tools.get(step.tool)
    amount = step.args.get("amount")
    if tool_policy is None or tool_policy.daily_caps is None or not isinstance(amount, int):
        return decision
    currency = str(step.args.get("currency", "")).lower()
    found = caps.scopes_for(
        job.workflow, step.tool, job.requester, tool_policy.daily_caps, currency
    )
    over = caps.reserve(step.idempotency_key, found, currency, amount)
    if over is None:
        return decision
    needs = replace(
        decision,
        outcome="approval_required",
        rule=over.rule,
        detail=f"{step.tool} of {amount} {currency} would take {over.scope} past its daily "
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
        step = claim.step
        decision = policy.decide(job.workflow, step.tool, step.args, job.id)
        if decision.outcome == "block":
            raise EscalationRequired(
                "policy_blocked",
                decision.detail,
                {
                    "tool": step.tool,
                    "step_id": step.step_id,
                    "rule": decision.rule,
                    "policy_version": decision.policy_version,
                },
            )
        if decision.outcome == "approval_required":
            # Re-checked right before the call: a token for other arguments, another step or
            # an older policy version is refused here, and the refusal is the evidence.
            decision = approved(job.id, step, decision)
        else:
            decision = within_daily_caps(job, claim, decision)
        get_tool(step.tool)  # unknown tools fail before any call
        try:
            return Executed(
                rec.tool(step.tool, step.args, key=downstream_key(step.idempotency_key)), decision
            )
        except ConflictError as exc:
            raise EscalationRequired(
                "tool_error",
                str(exc),
                {"kind": "idempotency_conflict", "tool": step.tool, "key": step.idempotency_key},
            ) from exc

    def abandon(self, session: Session, claim: Claim) -> None:
        """Give the claim back so the retry (same key) may take the step at once."""
        if claim.token:
            session.execute(
                update(PlanStep)
                .where(
                    PlanStep.id == claim.step.pk,
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
        step = claim.step
        row = session.get(PlanStep, step.pk)
        assert row is not None
        if row.status != StepStatus.SUCCEEDED:
            if row.claim_token != claim.token:
                raise StaleJob(f"step {step.step_id} was claimed by another delivery")
            row.status, row.result, row.error = StepStatus.SUCCEEDED, result, None
            row.completed_at = utcnow()
        chain.append(
            session,
            job.id,
            "step_executed",
            agent_actor(),
            {
                "step": step.step_id,
                "tool": step.tool,
                "args_hash": step.args_hash,
                "idempotency_key": step.idempotency_key,
                "service_identity": get_tool(step.tool).service_identity,
                "result_id": result.get("id") or (result.get("audit") or {}).get("id"),
                "attempt": claim.attempt,
                "approval_id": step.approval.id if step.approval is not None else None,
            },
        )
        if step.approval is not None:
            approvals.mark_used(session, step.approval.id)
        lifecycle.transition(
            session,
            job,
            lifecycle.EXECUTED,
            actor=agent_actor(),
            reason=f"{step.step_id} {step.tool} done",
        )
