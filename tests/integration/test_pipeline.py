"""The whole pipeline on real PostgreSQL, real Redis, a real worker process and the sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.audit import chain as audit
from app.core.db import session_scope
from app.intake import submissions
from app.jobs import lifecycle
from app.jobs.celery_config import make_celery
from app.models import Escalation, Job, PlanStep
from tests.support.processes import wait_for
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.integration

SETTLED = lifecycle.TERMINAL | {lifecycle.ESCALATED}


def submission(ticket: int, delivery: str, requester: str = "zendesk-user:101") -> dict[str, Any]:
    return {
        "workflow": "support_refund",
        "source": "zendesk",
        "external_id": str(ticket),
        "delivery_id": delivery,
        "requester": requester,
        "input": {"ticket_id": ticket},
    }


def status_of(job_id: str) -> str:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.status


def wait_settled(job_id: str, timeout: float = 60) -> str:
    return str(
        wait_for(
            lambda: (st := status_of(job_id)) in SETTLED and st,
            timeout=timeout,
            what=f"job {job_id} to settle",
        )
    )


def test_refund_completes_once_even_when_delivered_twice(pg_env, sandbox: Sandbox, start_worker):
    # Given a worker on all queues
    start_worker()
    # When the same Zendesk event is delivered twice
    first, created = submissions.submit(submission(4821, "evt-1"), submitted_by="test")
    again, created_again = submissions.submit(submission(4821, "evt-1"), submitted_by="test")
    # Then it is one job, which completes
    assert created and not created_again and again == first
    assert wait_settled(first) == lifecycle.COMPLETED
    # And exactly one refund and one internal note were applied downstream
    refunds = sandbox.applied("stripe")
    assert [(w["body"]["charge"], int(w["body"]["amount"])) for w in refunds] == [("ch_1001", 2500)]
    assert refunds[0]["idempotency_key"] == f"opsgate-{first}-s1"
    notes = sandbox.applied("zendesk")
    assert len(notes) == 1 and notes[0]["body"]["ticket"]["comment"]["public"] is False
    # And the audit chain of the job verifies
    with session_scope() as s:
        assert audit.verify_job(s, first) is None
        assert audit.count(s, first) >= 8
        steps = s.scalars(select(PlanStep).where(PlanStep.job_id == first)).all()
        assert [(p.tool, p.status) for p in steps] == [
            ("stripe.refund", "succeeded"),
            ("zendesk.add_comment", "succeeded"),
        ]


def test_redelivered_stage_messages_cause_no_second_effect(pg_env, sandbox: Sandbox, start_worker):
    # Given a completed refund job
    start_worker()
    job_id, _ = submissions.submit(
        submission(4822, "evt-2", "zendesk-user:102"), submitted_by="test"
    )
    assert wait_settled(job_id) == lifecycle.COMPLETED
    # When every stage message is delivered again (at-least-once delivery)
    app = make_celery()
    for stage in lifecycle.STAGES.values():
        app.send_task(stage.task, args=[job_id], queue=stage.queue)
    # And a later job is processed after them on the same queues (so they were consumed)
    marker, _ = submissions.submit(
        submission(4827, "evt-3", "zendesk-user:106"), submitted_by="test"
    )
    assert wait_settled(marker) == lifecycle.COMPLETED
    # Then the first job's refund and note were applied once
    charges = [w["body"]["charge"] for w in sandbox.applied("stripe")]
    assert sorted(charges) == ["ch_1002", "ch_1006"]
    assert len(sandbox.applied("zendesk")) == 2
    assert status_of(job_id) == lifecycle.COMPLETED


def test_crash_after_the_write_replays_instead_of_refunding_twice(
    pg_env, sandbox: Sandbox, start_worker, monkeypatch
):
    # Given a job verified and ready, processed in this process up to the executor
    from app.controls.calls import CallRecorder
    from app.stages import runner
    from app.stages.execute import ExecuteStage
    from app.stages.plan import PlanStage
    from app.stages.verify_proposal import VerifyProposalStage

    monkeypatch.setenv("OPSGATE_CLAIM_LEASE", "1")
    from tests.support.env import reset_process_state

    reset_process_state()
    sub = submissions.parse_submission(submission(4821, "evt-crash"))
    with session_scope() as s:
        job, _ = submissions.accept(s, sub, submitted_by="test")
        s.commit()
        job_id = job.id
    for stage in (PlanStage(), VerifyProposalStage()):
        with session_scope() as s:
            view = runner.JobView(
                job_id, "support_refund", {"ticket_id": 4821}, "t", s.get(Job, job_id).version, 0, 1
            )
            ctx = stage.prepare(s, s.get(Job, job_id))
            s.commit()
        result = stage.work(view, ctx, CallRecorder(stage.name))
        with session_scope() as s:
            stage.apply(s, s.get(Job, job_id), ctx, result)
            s.commit()
    assert status_of(job_id) == lifecycle.READY
    # When an executor claims the step and makes the refund, then dies before recording it
    execute = ExecuteStage()
    with session_scope() as s:
        claim = execute.prepare(s, s.get(Job, job_id))
        s.commit()
    view = runner.JobView(job_id, "support_refund", {"ticket_id": 4821}, "t", 0, 0, 1)
    execute.work(view, claim, CallRecorder("execute"))
    assert len(sandbox.applied("stripe")) == 1
    # And a real worker picks the job up again (its lease has expired by then)
    start_worker()
    from app.jobs import outbox

    with session_scope() as s:
        lifecycle.enqueue_stage(s, s.get(Job, job_id))
        s.commit()
    outbox.publish_for_job(job_id)
    # Then the job completes, and Stripe saw the retry as a replay of the same key
    assert wait_settled(job_id) == lifecycle.COMPLETED
    stripe_writes = sandbox.ledger(system="stripe")
    assert [w["outcome"] for w in stripe_writes] == ["applied", "replayed"]
    assert len({w["idempotency_key"] for w in stripe_writes}) == 1


def test_over_the_cap_escalates_and_writes_nothing(pg_env, sandbox: Sandbox, start_worker):
    start_worker()
    job_id, _ = submissions.submit(
        submission(4823, "evt-4", "zendesk-user:103"), submitted_by="test"
    )
    assert wait_settled(job_id) == lifecycle.ESCALATED
    assert sandbox.ledger() == []

    def notified() -> Escalation | None:
        with session_scope() as s:
            esc = s.scalar(select(Escalation).where(Escalation.job_id == job_id))
            return esc if esc is not None and esc.notified_at is not None else None

    esc = wait_for(notified, timeout=30, what="the human queue to receive the escalation")
    assert esc.reason == "approval_required"
    assert esc.evidence["rule"] == "autonomy_cap" and esc.evidence["amount"] == 9000


@pytest.mark.parametrize(
    ("ticket", "requester", "rule"),
    [
        (4824, "zendesk-user:104", "currency_matches"),
        (4825, "zendesk-user:105", "not_already_refunded"),
        (4828, "zendesk-user:102", "charge_belongs_to_requester"),
    ],
)
def test_failed_checks_escalate_with_the_rule(
    pg_env, sandbox: Sandbox, start_worker, ticket, requester, rule
):
    start_worker()
    job_id, _ = submissions.submit(
        submission(ticket, f"evt-{ticket}", requester), submitted_by="test"
    )
    assert wait_settled(job_id) == lifecycle.ESCALATED
    with session_scope() as s:
        esc = s.scalar(select(Escalation).where(Escalation.job_id == job_id))
        assert esc is not None
        assert (esc.reason, esc.evidence["rule"]) == ("verification_failed", rule)
    assert sandbox.applied() == []


def test_reaper_republishes_a_job_whose_message_was_lost(
    pg_env, sandbox: Sandbox, start_worker, monkeypatch
):
    # Given a queued job whose stage message was marked taken but never reached Redis
    from app.jobs import outbox
    from app.stages import reaper

    sub = submissions.parse_submission(submission(4821, "evt-lost"))
    with session_scope() as s:
        job, _ = submissions.accept(s, sub, submitted_by="test")
        s.flush()
        outbox.taken(s, job.id)
        s.commit()
        job_id = job.id
    start_worker()
    assert status_of(job_id) == lifecycle.QUEUED
    # When the reaper runs with a zero staleness window
    result = reaper.nudge_stale(0)
    outbox.relay(0)
    # Then the job is picked up and completes
    assert result >= 1
    assert wait_settled(job_id) == lifecycle.COMPLETED
    assert len(sandbox.applied("stripe")) == 1


def test_two_sessions_cannot_both_advance_a_job(pg_env):
    from app.errors import StaleJob

    sub = submissions.parse_submission(submission(4821, "evt-race"))
    with session_scope() as s:
        job, _ = submissions.accept(s, sub, submitted_by="test")
        s.commit()
        job_id = job.id
    with session_scope() as a, session_scope() as b:
        job_a, job_b = a.get(Job, job_id), b.get(Job, job_id)
        lifecycle.transition(a, job_a, lifecycle.PLANNED, actor="a")
        a.commit()
        with pytest.raises(StaleJob):
            lifecycle.transition(b, job_b, lifecycle.PLANNED, actor="b")
    assert status_of(job_id) == lifecycle.PLANNED
