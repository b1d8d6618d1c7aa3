"""app/stages/plan.py on SQLite, the real Redis and the sandbox: the plan stage reads the job's
context through its workflow, plans with the rules tier, refuses what it cannot run, and
stores the plan with opsgate's step ids and keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from app.audit import chain
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.errors import EscalationRequired
from app.jobs import lifecycle
from app.jobs.steps import Plan, Step
from app.models import AuditEvent, Job, PlanStep, StepStatus
from app.stages.plan import PlanStage, count_attachments, validate_plan, work_journal
from app.stages.runner import JobView
from tests.support.sandbox import Sandbox


def view(job_id: str) -> JobView:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return JobView(job.id, job.workflow, job.input, job.requester, job.version, 0, 1)


def plan_for(job_id: str) -> tuple[Plan, str]:
    stage = PlanStage()
    with session_scope() as s:
        ctx = stage.prepare(s, s.get(Job, job_id))
    return stage.work(view(job_id), ctx, CallRecorder(stage="plan", workflow="support_refund"))


def test_a_refund_ticket_is_planned_by_the_rules_tier_and_stored(
    redis_env: None, sandbox: Sandbox, new_job: Callable[..., str]
) -> None:
    job_id = new_job(ticket_id=4821, requester="zendesk-user:101")
    plan, tier = plan_for(job_id)
    assert tier == "rules"
    assert [s.tool for s in plan.steps] == ["stripe.refund", "zendesk.add_comment"]
    assert plan.steps[0].args["charge_id"] == "ch_1001" and plan.steps[0].args["amount"] == 2500
    stage = PlanStage()
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        stage.apply(s, job, None, (plan, tier))
        s.commit()
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == lifecycle.PLANNED
        assert (job.planner_tier, job.current_step) == ("rules", 0)
        rows = s.scalars(
            select(PlanStep).where(PlanStep.job_id == job_id).order_by(PlanStep.position)
        ).all()
        assert [(r.step_id, r.status, r.idempotency_key) for r in rows] == [
            ("s1", StepStatus.PENDING, f"{job_id}:s1"),
            ("s2", StepStatus.PENDING, f"{job_id}:s2"),
        ]
        assert rows[0].args_hash == chain.sha256_hex(chain.canonical_json(rows[0].args))
        kinds = s.scalars(
            select(AuditEvent.kind).where(AuditEvent.job_id == job_id).order_by(AuditEvent.seq)
        ).all()
        assert kinds[-2:] == ["plan", "transition"]


def test_a_request_the_rules_do_not_know_escalates_no_model_without_a_model(
    redis_env: None, sandbox: Sandbox, new_job: Callable[..., str]
) -> None:
    job_id = new_job(ticket_id=4826)  # "not a refund": the demo's 06
    with pytest.raises(EscalationRequired) as stopped:
        plan_for(job_id)
    assert stopped.value.reason == "no_model"
    assert stopped.value.evidence == {"workflow": "support_refund"}


def test_a_refund_the_chain_would_refuse_escalates_at_planning(
    redis_env: None, sandbox: Sandbox, new_job: Callable[..., str]
) -> None:
    job_id = new_job(ticket_id=4825)  # charge ch_1005 is already fully refunded
    with pytest.raises(EscalationRequired) as stopped:
        plan_for(job_id)
    assert stopped.value.reason == "verification_failed"
    assert stopped.value.evidence["stage"] == "plan"
    assert stopped.value.evidence["rule"] == "not_already_refunded"


def test_validate_plan_refuses_another_workflow_or_bad_arguments() -> None:
    step = Step(tool="stripe.refund", args={"charge_id": "ch_1", "amount": -5, "currency": "usd"})
    with pytest.raises(EscalationRequired, match="plan is for it_request, job is support_refund"):
        validate_plan(
            Plan(workflow="it_request", summary="", confidence=1, steps=[]), "support_refund"
        )
    with pytest.raises(EscalationRequired) as bad:
        validate_plan(
            Plan(workflow="support_refund", summary="", confidence=1, steps=[step]),
            "support_refund",
        )
    assert (bad.value.reason, bad.value.evidence) == ("schema_invalid", {"tool": "stripe.refund"})


def test_the_work_journal_has_no_ids_or_times(
    redis_env: None, new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    job_id = new_job()
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        walk(s, job, lifecycle.PLANNED)
        s.commit()
        lines = work_journal(s, job_id)
    assert lines[-1] == "queued -> planned:"
    assert all(job_id not in line for line in lines)


def test_count_attachments_counts_the_ticket_and_its_comments() -> None:
    context = {
        "ticket": {
            "id": 1,
            "attachments": [{"id": 1}, {"id": 2}],
            "comments": [{"attachments": [{"id": 3}]}, {"body": "no files"}, "not a comment"],
        }
    }
    assert count_attachments(context) == 3  # type: ignore[arg-type]
    assert count_attachments({}) == 0
