"""app/stages/verify_outcome.py on the embedded SQLite, the real Redis and the sandbox: a write
is read back from the system it changed, a lost write escalates `outcome_mismatch`, and a
confirmed step moves the job to its next step or completes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.audit import chain
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.errors import EscalationRequired
from app.jobs import lifecycle
from app.models import AuditEvent, Escalation, Job
from app.stages import runner
from app.stages.execute import ExecuteStage
from app.stages.runner import JobView
from app.stages.verify_outcome import Outcome, VerifyOutcomeStage
from tests.support.sandbox import Sandbox
from verifiers.base import Verdict

REFUND = {
    "charge_id": "ch_1001",
    "amount": 2500,
    "currency": "usd",
    "reason": "requested_by_customer",
}
NOTE = {"ticket_id": 4821, "body": "opsgate refunded 25.00 USD on charge ch_1001.", "public": False}


@pytest.fixture
def executed_job(job_with_plan: Callable[..., str]) -> Callable[..., str]:
    """A job for ticket 4821 with a stored plan of `steps`, its first step run by the real
    execute stage (the job is `executed`)."""

    def make(*steps: tuple[str, dict[str, Any]]) -> str:
        job_id = job_with_plan(*steps, to=(lifecycle.PLANNED, lifecycle.READY))
        assert runner.run_stage(ExecuteStage(), job_id) == lifecycle.EXECUTED
        return job_id

    return make


def prepared(job_id: str) -> tuple[Outcome, JobView]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        step = VerifyOutcomeStage().prepare(session, job)
        view = JobView(
            job.id, job.workflow, dict(job.input), job.requester, job.version, job.current_step, 1
        )
    return step, view


def apply(job_id: str, step: Outcome, verdict: Verdict) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        VerifyOutcomeStage().apply(session, job, step, verdict)
        session.commit()


def test_a_refund_that_happened_is_confirmed_on_the_charge(
    executed_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = executed_job(("stripe.refund", REFUND))
    step, view = prepared(job_id)
    assert step.step.step_id == "s1" and step.step.result is not None
    rec = CallRecorder(stage="verify_outcome", workflow="support_refund")

    verdict = VerifyOutcomeStage().work(view, step, rec)

    assert (verdict.ok, verdict.rule) == (True, "refund_confirmed")
    assert verdict.evidence == {
        "refund_id": step.step.result["id"],
        "charge_id": "ch_1001",
        "amount": 2500,
    }
    assert [c.tool for c in rec.calls] == ["stripe.list_refunds"]


def test_a_lost_write_escalates_outcome_mismatch_with_the_evidence(
    executed_job: Callable[..., str], sandbox: Sandbox
) -> None:
    # Stripe answers the refund as a success and rolls it back: only the read-back can tell.
    httpx.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"system": "stripe", "lost_write_rate": 1.0, "count": 1},
        timeout=10,
    ).raise_for_status()
    job_id = executed_job(("stripe.refund", REFUND))
    step, view = prepared(job_id)
    assert step.step.result is not None and step.step.result.get("id")
    rec = CallRecorder(stage="verify_outcome", workflow="support_refund")

    with pytest.raises(EscalationRequired) as mismatch:
        VerifyOutcomeStage().work(view, step, rec)

    assert mismatch.value.reason == "outcome_mismatch"
    assert mismatch.value.evidence == {
        "tool": "stripe.refund",
        "rule": "refund_exists",
        "refund_id": step.step.result["id"],
        "charge_id": "ch_1001",
        "amount": 2500,
    }


def test_a_lost_write_through_the_harness_makes_the_job_an_incident(
    executed_job: Callable[..., str], sandbox: Sandbox
) -> None:
    httpx.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"system": "stripe", "lost_write_rate": 1.0, "count": 1},
        timeout=10,
    ).raise_for_status()
    job_id = executed_job(("stripe.refund", REFUND))

    assert runner.run_stage(VerifyOutcomeStage(), job_id) == lifecycle.ESCALATED

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.incident
        esc = session.query(Escalation).filter_by(job_id=job_id).one()
        assert (esc.reason, esc.stage) == ("outcome_mismatch", "verify_outcome")
        assert esc.evidence["rule"] == "refund_exists"


def test_a_read_step_has_nothing_to_read_back(
    executed_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = executed_job(("stripe.get_charge", {"charge_id": "ch_1001"}))
    step, view = prepared(job_id)
    rec = CallRecorder(stage="verify_outcome", workflow="support_refund")

    verdict = VerifyOutcomeStage().work(view, step, rec)

    assert (verdict.ok, verdict.rule) == (True, "no_read_back")
    assert verdict.detail == "stripe.get_charge changes nothing to read back"
    assert rec.calls == []


def test_a_confirmed_step_with_more_to_do_moves_the_job_to_the_next_step(
    executed_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = executed_job(("stripe.refund", REFUND), ("zendesk.add_comment", NOTE))
    step, view = prepared(job_id)
    verdict = VerifyOutcomeStage().work(view, step, CallRecorder(stage="verify_outcome"))

    apply(job_id, step, verdict)

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.current_step) == (lifecycle.READY, 1)
        events = session.query(AuditEvent).filter_by(job_id=job_id).order_by(AuditEvent.id).all()
        assert [e.kind for e in events[-2:]] == ["verdict", "transition"]
        assert {k: v for k, v in events[-2].payload.items() if k != "at"} == {
            "ok": True,
            "rule": "refund_confirmed",
            "detail": "refund found on the charge with the amount",
            "confidence": 1.0,
            "evidence": verdict.evidence,
            "stage": "outcome",
            "step": "s1",
        }
        assert events[-1].payload["reason"] == "s1 confirmed"
        assert chain.verify_job(session, job_id) is None


def test_the_last_confirmed_step_completes_the_job(
    executed_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = executed_job(("stripe.refund", REFUND), ("zendesk.add_comment", NOTE))
    assert runner.run_stage(VerifyOutcomeStage(), job_id) == lifecycle.READY
    assert runner.run_stage(ExecuteStage(), job_id) == lifecycle.EXECUTED
    step, view = prepared(job_id)
    assert step.step.step_id == "s2"
    rec = CallRecorder(stage="verify_outcome", workflow="support_refund")

    verdict = VerifyOutcomeStage().work(view, step, rec)
    apply(job_id, step, verdict)

    assert (verdict.ok, verdict.rule) == (True, "comment_confirmed")
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.current_step) == (lifecycle.COMPLETED, 1)
        assert job.status_reason == "every step done and confirmed"
