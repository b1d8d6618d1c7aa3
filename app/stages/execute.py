"""The execute stage: claim the step's key, re-check policy, call the tool exactly once."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from app.audit import chain
from app.controls import approvals, gates, policy
from app.controls.calls import CallRecorder
from app.errors import ConflictError, EscalationRequired, RetryableError, StaleJob
from app.jobs import lifecycle
from app.jobs.steps import StoredStep
from app.models import Job, PlanStep, StepStatus, utcnow
from app.settings import get_settings
from app.stages.runner import JobView, agent_actor
from tools.base import Risk
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
        spec = get_tool(step.tool)  # an unknown tool fails before any gate or call
        # Policy, a reviewer's approval, the daily caps: the first that stops the call
        # escalates (app.controls.gates); the call recorder runs the gates at the call.
        decision = gates.run(
            gates.BEFORE_CALL,
            gates.GateCall(
                job.workflow,
                step.tool,
                step.args,
                system=spec.system,
                write=spec.risk is not Risk.READ,
                job_id=job.id,
                requester=job.requester,
                step=step,
            ),
        )
        assert decision is not None  # the policy gate decides every step
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
        # Store the result only under this delivery's claim; matching nothing means the step
        # is done already (a replay) or another delivery holds it now.
        stored: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(PlanStep)
            .where(
                PlanStep.id == step.pk,
                PlanStep.status != StepStatus.SUCCEEDED,
                PlanStep.claim_token == claim.token,
            )
            .values(status=StepStatus.SUCCEEDED, result=result, error=None, completed_at=utcnow())
            .execution_options(synchronize_session=False),
            # The pending audit events go with the transition's flush, in one batch.
            execution_options={"autoflush": False},
        )
        if not stored.rowcount:
            now = session.scalar(select(PlanStep.status).where(PlanStep.id == step.pk))
            if now != StepStatus.SUCCEEDED:
                raise StaleJob(f"step {step.step_id} was claimed by another delivery")
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
