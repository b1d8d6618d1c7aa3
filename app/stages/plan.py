"""The plan stage: gather the job's context, ask the planner, store the plan's steps."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import chain
from app.controls import policy
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.core.redaction import redact
from app.errors import EscalationRequired, PermanentError
from app.jobs import lifecycle
from app.jobs.context import PlanningContext
from app.jobs.steps import Plan, step_key
from app.llm import planner as model_planner
from app.llm.config import models_config
from app.models import Escalation, Job, JobEvent, PlanStep, StepStatus
from app.settings import get_settings
from app.stages.runner import JobView, agent_actor
from app.workflows import registry
from tools.catalog import get_tool
from verifiers.zendesk.thread import read_comments


def gather_context(
    job: JobView, rec: CallRecorder, seen: dict[str, Any] | None = None
) -> PlanningContext:
    """Read what the planner needs to see, as the job's workflow says (its `read_context`:
    the ticket for support work, the invoice and its orders for an invoice exception, the
    Okta users for an IT request; missing records None).

    `seen`: facts this stage already read; the job's ticket among them is not read again.
    """
    return registry.get(job.workflow).read_context(job.input, job.requester, rec, seen)


# What the rules tier reads for a refund and the model tiers are not shown (the model reads
# a charge through its own tool calls; its prompt stays the ticket and the job).
RULES_ONLY = ("charge", "customer_charges")


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


def work_journal(session: Session, job_id: str) -> list[str]:
    """What has happened to the job so far, as lines for the planner's prompt.

    No ids or times: two jobs for the same request get the same journal, so the model
    response cache can answer the second.
    """
    lines = [
        f"{e.from_status or 'new'} -> {e.to_status}: {e.reason or ''}".strip()
        for e in session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        )
    ]
    for esc in session.scalars(
        select(Escalation).where(Escalation.job_id == job_id).order_by(Escalation.id)
    ):
        decided = f", decided {esc.decision}: {esc.note or ''}" if esc.decision else ""
        lines.append(f"escalated ({esc.reason}): {esc.detail}{decided}")
    return lines


def read_journal(job_id: str) -> list[str]:
    """The work journal, read in a short read-only transaction of its own."""
    with session_scope() as session:
        return work_journal(session, job_id)


def count_attachments(context: PlanningContext) -> int:
    """Attachments on the ticket and its comments (the router sends those to `large`)."""
    ticket = context.get("ticket") or {}
    found = len(ticket.get("attachments") or [])
    for comment in ticket.get("comments") or []:
        found += len(comment.get("attachments") or []) if isinstance(comment, dict) else 0
    return found


def thread_context(job: JobView, context: PlanningContext, rec: CallRecorder) -> PlanningContext:
    """A ticket's context with the ticket's comments, for the rules tier (which plans nothing
    the thread takes back or disputes); the model tiers' prompt is left as it was."""
    if not context.get("ticket"):
        return context
    return {**context, "comments": read_comments(rec, context["ticket"])}


class PlanStage:
    """Stage `plan`: queued -> planned."""

    name = "plan"
    status = lifecycle.QUEUED

    def prepare(self, session: Session, job: Job) -> None:
        # The work journal is read only when the model plans (the rules tier needs none).
        return None

    def work(self, job: JobView, ctx: None, rec: CallRecorder) -> tuple[Plan, str]:
        context = gather_context(job, rec)
        plan, tier = None, "rules"
        if job.workflow not in models_config().router.skip_rules:
            plan = registry.plan(job.workflow, thread_context(job, context, rec))
        if plan is None:
            if not get_settings().model_configured:
                raise EscalationRequired(
                    "no_model",
                    "the rules tier does not recognize this request and no model endpoint "
                    "is configured (OPENAI_API_KEY / OPENAI_BASE_URL)",
                    {"workflow": job.workflow},
                )
            workflow, _ = policy.workflow_policy(job.workflow)
            request = model_planner.PlanRequest(
                workflow=job.workflow,
                allowed_tools=list(workflow.allowed_tools),
                untrusted={
                    "input": job.input,
                    **{k: v for k, v in context.items() if k not in RULES_ONLY},
                },
                journal=read_journal(job.id),
                attachments=count_attachments(context),
            )
            plan, tier = model_planner.plan(request, rec, validate_plan)
        if plan.escalate is not None:
            escalate = plan.escalate
            if escalate.refusal:
                # The rules tier ran the write's own verifier rules: the same reason and rule
                # the verify stage would give, without a plan certain to fail.
                raise EscalationRequired(
                    "verification_failed",
                    escalate.reason,
                    {
                        "tool": escalate.tool,
                        "rule": escalate.rule,
                        "stage": "plan",
                        **escalate.evidence,
                    },
                )
            evidence: dict[str, Any] = {"summary": plan.summary}
            if escalate.rule:
                evidence["rule"] = escalate.rule
            raise EscalationRequired("planner_requested", escalate.reason, evidence)
        if not plan.steps:
            raise EscalationRequired(
                "planner_requested",
                "the planner proposed no action",
                {"kind": "empty_plan", "summary": plan.summary},
            )
        validate_plan(plan, job.workflow)
        return plan, tier

    def apply(self, session: Session, job: Job, ctx: None, result: tuple[Plan, str]) -> None:
        plan, tier = result
        store_plan(session, job, plan, tier)
        lifecycle.transition(
            session, job, lifecycle.PLANNED, actor=agent_actor(), reason=plan.summary
        )


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
                args_hash=chain.sha256_hex(chain.canonical_json(step.args)),
                rationale=step.rationale,
                evidence=step.evidence,
                label=step.id,
                status=StepStatus.PENDING,
                idempotency_key=step_key(job.id, step_id, 1),
            )
        )
    chain.append(
        session,
        job.id,
        "plan",
        agent_actor(),
        {
            "tier": tier,
            "summary": redact(plan.summary),
            "confidence": plan.confidence,
            "steps": [
                {
                    "tool": s.tool,
                    "args_hash": chain.sha256_hex(chain.canonical_json(s.args)),
                    "evidence": s.evidence,
                }
                for s in plan.steps
            ],
        },
    )
    # The steps are read again on their next use in this session (with the rows above).
    session.expire(job, ["steps"])
