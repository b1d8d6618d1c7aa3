"""The plan stage: gather the job's context, ask the planner, store the plan's steps."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app import audit, jobs
from app.calls import CallRecorder
from app.errors import EscalationRequired, PermanentError
from app.models import Job, PlanStep
from app.plan import Plan
from app.planner import rules
from app.runner import JobView, agent_actor
from app.settings import get_settings
from tools.catalog import get_tool


def step_key(job_id: str, step_id: str, revision: int) -> str:
    """The step's idempotency key: `{job_id}:{step_id}`, plus the revision after the first."""
    base = f"{job_id}:{step_id}"
    return base if revision == 1 else f"{base}:r{revision}"


def gather_context(job: JobView, rec: CallRecorder) -> dict[str, Any]:
    """Read what the planner needs to see (the ticket for support work)."""
    if "ticket_id" in job.input:
        ticket = rec.tool("zendesk.get_ticket", {"ticket_id": job.input["ticket_id"]})["ticket"]
        return {"ticket": ticket}
    return {}


def validate_plan(plan: Plan, workflow: str) -> None:
    """Every step names a catalog tool with valid arguments, for this workflow."""
    if plan.workflow != workflow:
        raise EscalationRequired(
            "schema_invalid", f"plan is for {plan.workflow}, job is {workflow}"
        )
    for step in plan.steps:
        try:
            get_tool(step.tool).parse_args(step.args)
        except PermanentError as exc:
            raise EscalationRequired("schema_invalid", str(exc), {"tool": step.tool}) from exc


class PlanStage:
    """Stage `plan`: queued -> planned."""

    name = "plan"
    status = jobs.QUEUED

    def prepare(self, session: Session, job: Job) -> None:
        return None

    def work(self, job: JobView, ctx: None, rec: CallRecorder) -> tuple[Plan, str]:
        context = gather_context(job, rec)
        plan = rules.plan(job.workflow, context)
        if plan is None:
            if get_settings().model_configured:
                detail = "the rules tier does not recognize this request; model tiers come later"
            else:
                detail = (
                    "the rules tier does not recognize this request and no model endpoint "
                    "is configured (OPENAI_API_KEY / OPENAI_BASE_URL)"
                )
            raise EscalationRequired("no_model", detail, {"workflow": job.workflow})
        if plan.escalate is not None:
            raise EscalationRequired(
                "planner_escalated", plan.escalate.reason, {"summary": plan.summary}
            )
        if not plan.steps:
            raise EscalationRequired(
                "empty_plan", "the planner proposed no action", {"summary": plan.summary}
            )
        validate_plan(plan, job.workflow)
        return plan, "rules"

    def apply(self, session: Session, job: Job, ctx: None, result: tuple[Plan, str]) -> None:
        plan, tier = result
        store_plan(session, job, plan, tier)
        jobs.transition(session, job, jobs.PLANNED, actor=agent_actor(), reason=plan.summary)


def store_plan(session: Session, job: Job, plan: Plan, tier: str) -> None:
    """Store the plan's steps with opsgate-assigned ids and idempotency keys."""
    job.plan_summary, job.plan_confidence, job.planner_tier = plan.summary, plan.confidence, tier
    job.current_step = 0
    for position, step in enumerate(plan.steps):
        step_id = f"s{position + 1}"
        # Store the validated arguments (defaults filled in): what policy, the verifiers and
        # the executor see is exactly what the tool will be called with.
        args = get_tool(step.tool).parse_args(step.args).model_dump(mode="json")
        step = step.model_copy(update={"args": args})
        session.add(
            PlanStep(
                job_id=job.id,
                step_id=step_id,
                revision=1,
                position=position,
                tool=step.tool,
                args=step.args,
                args_hash=audit.sha256_hex(audit.canonical_json(step.args)),
                rationale=step.rationale,
                evidence=step.evidence,
                label=step.id,
                status="pending",
                idempotency_key=step_key(job.id, step_id, 1),
            )
        )
    audit.append(
        session,
        job.id,
        "plan",
        agent_actor(),
        {
            "tier": tier,
            "summary": plan.summary,
            "confidence": plan.confidence,
            "steps": [
                {
                    "tool": s.tool,
                    "args_hash": audit.sha256_hex(audit.canonical_json(s.args)),
                    "evidence": s.evidence,
                }
                for s in plan.steps
            ],
        },
    )
    session.flush()
    session.refresh(job, ["steps"])
