"""app/stages/execute.py on the embedded SQLite, the real Redis and the sandbox: a step is
claimed once before any call, the gates before the call stop what may not run, an allowed
call goes out once with the key derived from the step's, and apply records the effect."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.audit import chain
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.errors import EscalationRequired, RetryableError, StaleJob
from app.human import decisions, escalation
from app.jobs import lifecycle
from app.models import Approval, AuditEvent, Job, PlanStep, StepStatus, utcnow
from app.stages.execute import Claim, Executed, ExecuteStage, claim_step, downstream_key
from app.stages.runner import JobView
from tests.support.sandbox import Sandbox

REFUND = {
    "charge_id": "ch_1001",
    "amount": 2500,
    "currency": "usd",
    "reason": "requested_by_customer",
}
NOTE = {"ticket_id": 4821, "body": "opsgate refunded 25.00 USD on charge ch_1001.", "public": False}


@pytest.fixture
def ready_job(job_with_plan: Callable[..., str]) -> Callable[..., str]:
    """A job for ticket 4821 with a stored plan of `steps` (tool, args), moved to `ready`."""
    return lambda *steps: job_with_plan(*steps, to=(lifecycle.PLANNED, lifecycle.READY))


def claim(job_id: str) -> tuple[Claim, JobView]:
    """Claim the job's current step in a transaction of its own, as the harness's first one."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        held = ExecuteStage().prepare(session, job)
        view = JobView(
            job.id, job.workflow, dict(job.input), job.requester, job.version, job.current_step, 1
        )
        session.commit()
    return held, view


def step_row(session: Session, job_id: str, step_id: str = "s1") -> PlanStep:
    row = session.query(PlanStep).filter_by(job_id=job_id, step_id=step_id).one()
    return row


def audit_kinds(session: Session, job_id: str) -> list[str]:
    events = session.query(AuditEvent).filter_by(job_id=job_id).order_by(AuditEvent.id)
    return [e.kind for e in events]


def apply(job_id: str, held: Claim, done: Executed, rec: CallRecorder) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        rec.write(session, job_id)
        ExecuteStage().apply(session, job, held, done)
        session.commit()


# claim_step


def test_a_pending_step_is_claimed_once_and_a_live_claim_elsewhere_retries(
    ready_job: Callable[..., str],
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))

    held, _ = claim(job_id)

    assert held.token and held.attempt == 1 and held.stored_result is None
    assert held.step.step_id == "s1" and held.step.tool == "stripe.refund"
    with session_scope() as session:
        row = step_row(session, job_id)
        assert (row.status, row.claim_token, row.attempts) == (StepStatus.CLAIMED, held.token, 1)
        assert row.claimed_at is not None
        job = session.get(Job, job_id)
        assert job is not None
        # A second delivery while the claim is live: nothing changes, it comes back later.
        with pytest.raises(RetryableError, match="in flight elsewhere") as busy:
            claim_step(session, job)
        assert busy.value.retry_after == pytest.approx(60.0 / 3)
        session.rollback()
        row = step_row(session, job_id)
        assert (row.claim_token, row.attempts) == (held.token, 1)


def test_a_claim_that_outlived_its_lease_is_taken_over_with_a_new_token(
    ready_job: Callable[..., str],
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))
    first, _ = claim(job_id)
    with session_scope() as session:
        # The worker that claimed it died: its claim is older than the lease (60 s).
        step_row(session, job_id).claimed_at = utcnow() - timedelta(seconds=61)
        session.commit()

    second, _ = claim(job_id)

    assert second.token and second.token != first.token
    assert second.attempt == 2
    with session_scope() as session:
        row = step_row(session, job_id)
        assert (row.status, row.claim_token, row.attempts) == (
            StepStatus.CLAIMED,
            second.token,
            2,
        )


def test_a_succeeded_step_replays_its_stored_result_without_a_claim(
    ready_job: Callable[..., str],
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))
    stored = {"id": "re_stored", "status": "succeeded"}
    with session_scope() as session:
        row = step_row(session, job_id)
        row.status, row.result, row.attempts = StepStatus.SUCCEEDED, stored, 1
        session.commit()

    held, view = claim(job_id)

    assert (held.token, held.attempt, held.stored_result) == ("", 1, stored)
    with session_scope() as session:
        row = step_row(session, job_id)
        assert (row.status, row.attempts, row.claim_token) == (StepStatus.SUCCEEDED, 1, None)
    # The replay calls nothing (no sandbox runs here: a call would fail) and decides nothing.
    rec = CallRecorder(stage="execute", workflow="support_refund")
    done = ExecuteStage().work(view, held, rec)
    assert done == Executed(stored, None)
    assert rec.calls == []


# ExecuteStage.work: the gates before the call


def test_a_policy_block_escalates_before_any_call(ready_job: Callable[..., str]) -> None:
    job_id = ready_job(("stripe.refund", dict(REFUND, reason="fraudulent")))
    held, view = claim(job_id)
    rec = CallRecorder(stage="execute", workflow="support_refund")

    with pytest.raises(EscalationRequired) as stopped:
        ExecuteStage().work(view, held, rec)

    assert stopped.value.reason == "policy_blocked"
    assert stopped.value.evidence["rule"] == "allowed_reasons"
    assert stopped.value.evidence["step_id"] == "s1"
    assert stopped.value.evidence["tool"] == "stripe.refund"
    assert rec.calls == []


def test_a_step_that_needs_approval_escalates_without_a_token(
    ready_job: Callable[..., str],
) -> None:
    job_id = ready_job(("stripe.refund", dict(REFUND, amount=9000)))
    held, view = claim(job_id)
    assert held.step.approval is None
    rec = CallRecorder(stage="execute", workflow="support_refund")

    with pytest.raises(EscalationRequired) as stopped:
        ExecuteStage().work(view, held, rec)

    assert stopped.value.reason == "approval_required"
    assert stopped.value.evidence["rule"] == "autonomy_cap"
    assert stopped.value.evidence["amount"] == 9000
    assert "token_refused" not in stopped.value.evidence  # none was given, none refused
    assert rec.calls == []


def test_an_allowed_refund_calls_the_tool_with_the_derived_downstream_key(
    ready_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))
    held, view = claim(job_id)
    rec = CallRecorder(stage="execute", workflow="support_refund")

    done = ExecuteStage().work(view, held, rec)

    key = downstream_key(f"{job_id}:s1")
    assert key == "opsgate-" + job_id.replace(":", "-") + "-s1"
    assert done.decision is not None
    assert (done.decision.outcome, done.decision.rule) == ("allow", "autonomy_grant")
    assert done.result["object"] == "refund" and done.result["amount"] == 2500
    assert [(c.tool, c.request["idempotency_key"]) for c in rec.calls] == [("stripe.refund", key)]
    writes = sandbox.applied("stripe")
    assert [(w["path"], w["idempotency_key"]) for w in writes] == [("/v1/refunds", key)]


def test_the_same_key_with_other_arguments_is_an_idempotency_conflict(
    ready_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))
    held, view = claim(job_id)
    ExecuteStage().work(view, held, CallRecorder(stage="execute", workflow="support_refund"))
    # The same step key sent again with another amount (as a revision that kept its key would).
    changed = dataclasses.replace(
        held, step=dataclasses.replace(held.step, args=dict(REFUND, amount=2000))
    )

    with pytest.raises(EscalationRequired) as stopped:
        ExecuteStage().work(view, changed, CallRecorder(stage="execute", workflow="support_refund"))

    assert stopped.value.reason == "tool_error"
    assert stopped.value.evidence == {
        "kind": "idempotency_conflict",
        "tool": "stripe.refund",
        "key": f"{job_id}:s1",
    }
    assert len(sandbox.applied("stripe")) == 1


# ExecuteStage.apply and abandon


def test_apply_marks_the_step_succeeded_and_appends_step_executed(
    ready_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = ready_job(("stripe.refund", REFUND), ("zendesk.add_comment", NOTE))
    held, view = claim(job_id)
    rec = CallRecorder(stage="execute", workflow="support_refund")
    done = ExecuteStage().work(view, held, rec)

    apply(job_id, held, done, rec)

    with session_scope() as session:
        row = step_row(session, job_id)
        assert (row.status, row.result, row.error) == (StepStatus.SUCCEEDED, done.result, None)
        assert row.completed_at is not None
        assert step_row(session, job_id, "s2").status == StepStatus.PENDING
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.current_step) == (lifecycle.EXECUTED, 0)
        assert audit_kinds(session, job_id)[-4:] == [
            "tool_call",
            "policy_decision",
            "step_executed",
            "transition",
        ]
        executed = session.query(AuditEvent).filter_by(job_id=job_id, kind="step_executed").one()
        assert {k: v for k, v in executed.payload.items() if k != "at"} == {
            "step": "s1",
            "tool": "stripe.refund",
            "args_hash": row.args_hash,
            "idempotency_key": f"{job_id}:s1",
            "service_identity": "stripe:restricted-key/refunds",
            "result_id": done.result["id"],
            "attempt": 1,
            "approval_id": None,
        }
        decision = session.query(AuditEvent).filter_by(job_id=job_id, kind="policy_decision").one()
        assert decision.payload["rule"] == "autonomy_grant"
        assert chain.verify_job(session, job_id) is None


def test_apply_after_another_delivery_took_the_claim_is_stale(
    ready_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))
    held, view = claim(job_id)
    rec = CallRecorder(stage="execute", workflow="support_refund")
    done = ExecuteStage().work(view, held, rec)
    with session_scope() as session:
        step_row(session, job_id).claim_token = "someone-else"
        session.commit()

    with pytest.raises(StaleJob, match="claimed by another delivery"):
        apply(job_id, held, done, rec)

    with session_scope() as session:
        assert step_row(session, job_id).status == StepStatus.CLAIMED
        job = session.get(Job, job_id)
        assert job is not None and job.status == lifecycle.READY
        assert "step_executed" not in audit_kinds(session, job_id)


def test_an_approved_step_runs_with_its_token_and_apply_spends_it(
    ready_job: Callable[..., str], sandbox: Sandbox
) -> None:
    # $90.00 of ch_1003's $120.00: over the $50.00 autonomy cap.
    job_id = ready_job(("stripe.refund", dict(REFUND, charge_id="ch_1003", amount=9000)))
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        esc = escalation.escalate(
            session,
            job,
            reason="approval_required",
            detail="over the autonomy cap",
            evidence={"step_id": "s1", "rule": "autonomy_cap"},
            stage="execute",
            actor="test",
        )
        session.flush()
        approved = decisions.decide(
            session, esc, decisions.Decision(decision="approve"), "key:rita@example.com"
        )
        session.commit()
    assert approved["job_status"] == lifecycle.READY
    held, view = claim(job_id)
    assert held.step.approval is not None and held.step.approval.id == approved["approval_id"]
    rec = CallRecorder(stage="execute", workflow="support_refund")

    done = ExecuteStage().work(view, held, rec)
    apply(job_id, held, done, rec)

    assert done.decision is not None and done.decision.rule == "approved"
    assert done.decision.grant is not None
    assert done.decision.grant["approvers"] == ["key:rita@example.com"]
    assert done.result["amount"] == 9000
    with session_scope() as session:
        token = session.get(Approval, approved["approval_id"])
        assert token is not None and token.used_at is not None
        executed = session.query(AuditEvent).filter_by(job_id=job_id, kind="step_executed").one()
        assert executed.payload["approval_id"] == approved["approval_id"]


def test_abandon_gives_the_claim_back_for_the_next_delivery(
    ready_job: Callable[..., str],
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))
    held, _ = claim(job_id)

    with session_scope() as session:
        ExecuteStage().abandon(session, held)
        session.commit()

    with session_scope() as session:
        assert step_row(session, job_id).status == StepStatus.FAILED
    again, _ = claim(job_id)
    assert again.attempt == 2 and again.token != held.token


def test_abandon_leaves_a_claim_another_delivery_took_over_alone(
    ready_job: Callable[..., str],
) -> None:
    job_id = ready_job(("stripe.refund", REFUND))
    stale, _ = claim(job_id)
    with session_scope() as session:
        step_row(session, job_id).claimed_at = utcnow() - timedelta(seconds=61)
        session.commit()
    live, _ = claim(job_id)

    with session_scope() as session:
        ExecuteStage().abandon(session, stale)
        ExecuteStage().abandon(session, dataclasses.replace(live, token=""))  # a replay's
        session.commit()

    with session_scope() as session:
        row = step_row(session, job_id)
        assert (row.status, row.claim_token) == (StepStatus.CLAIMED, live.token)
