"""app/stages/verify_proposal.py on the embedded SQLite (the real Redis and the sandbox where
facts are read): policy decides the whole plan first, a block anywhere escalating before any
approval is asked for; a reviewer's token turns an approval into a decision; the facts are
checked plan rule by plan rule, then step chain by step chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.controls import approvals, policy
from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.errors import EscalationRequired
from app.human import decisions, escalation
from app.jobs import lifecycle
from app.jobs.steps import StoredStep
from app.models import AuditEvent, Job
from app.stages.runner import JobView
from app.stages.verify_proposal import (
    Proposal,
    VerifyProposalStage,
    check_facts,
    check_policy,
    human_approved,
)
from tests.support.sandbox import Sandbox
from tools.sandbox import seed

REFUND = {
    "charge_id": "ch_1001",
    "amount": 2500,
    "currency": "usd",
    "reason": "requested_by_customer",
}
NOTE = {"ticket_id": 4821, "body": "opsgate refunded 25.00 USD on charge ch_1001.", "public": False}
# $90.00 of carol's $120.00 charge, as ticket 4823 asks: over the $50.00 autonomy cap.
OVER_THE_CAP = {
    "charge_id": "ch_1003",
    "amount": 9000,
    "currency": "usd",
    "reason": "requested_by_customer",
}
REVIEWER = "key:rita@example.com"


@pytest.fixture
def planned_job(job_with_plan: Callable[..., str]) -> Callable[..., str]:
    """A job for `ticket` with a stored plan of `steps` (tool, args), moved to `planned`."""

    def make(
        *steps: tuple[str, dict[str, Any]], ticket: int = 4821, requester: str = "alice@example.com"
    ) -> str:
        return job_with_plan(
            *steps,
            ticket=ticket,
            requester=requester,
            summary=f"Refund as asked in ticket {ticket}",
        )

    return make


def proposal(job_id: str) -> tuple[Proposal, JobView]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        plan = VerifyProposalStage().prepare(session, job)
        view = JobView(
            job.id, job.workflow, dict(job.input), job.requester, job.version, job.current_step, 1
        )
    return plan, view


def approve_first_step(job_id: str) -> str:
    """Escalate the planned job for its first step's approval, and have a reviewer approve it
    (the job goes back to `planned`); returns the approval's id."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        esc = escalation.escalate(
            session,
            job,
            reason="approval_required",
            detail="over the autonomy cap",
            evidence={"step_id": "s1", "rule": "autonomy_cap"},
            stage="verify_proposal",
            actor="test",
        )
        session.flush()
        done = decisions.decide(session, esc, decisions.Decision(decision="approve"), REVIEWER)
        session.commit()
    assert done["job_status"] == lifecycle.PLANNED
    return str(done["approval_id"])


# check_policy


def test_a_block_anywhere_escalates_before_any_approval_is_asked_for(
    planned_job: Callable[..., str],
) -> None:
    job_id = planned_job(
        ("stripe.refund", OVER_THE_CAP),
        ("stripe.refund", dict(REFUND, charge_id="ch_1007", amount=1999, reason="fraudulent")),
    )
    plan, _ = proposal(job_id)

    with pytest.raises(EscalationRequired) as stopped:
        check_policy(job_id, "support_refund", plan.steps)

    # The first step needs a reviewer, but the plan could never run: nobody is asked.
    assert stopped.value.reason == "policy_blocked"
    evidence = stopped.value.evidence
    assert (evidence["step_id"], evidence["tool"], evidence["rule"]) == (
        "s2",
        "stripe.refund",
        "allowed_reasons",
    )
    assert evidence["reason"] == "fraudulent"
    assert evidence["policy_version"] == policy.workflow_policy("support_refund")[1]


def test_the_first_step_without_its_approval_escalates_once_every_step_is_decided(
    planned_job: Callable[..., str],
) -> None:
    job_id = planned_job(
        ("stripe.refund", OVER_THE_CAP),
        ("zendesk.add_comment", dict(NOTE, ticket_id=4823, public=True)),
        ticket=4823,
    )
    plan, _ = proposal(job_id)

    with pytest.raises(EscalationRequired) as stopped:
        check_policy(job_id, "support_refund", plan.steps)

    assert stopped.value.reason == "approval_required"
    assert (stopped.value.evidence["step_id"], stopped.value.evidence["rule"]) == (
        "s1",
        "autonomy_cap",
    )


def test_an_allowed_plan_gets_a_decision_per_step(planned_job: Callable[..., str]) -> None:
    job_id = planned_job(("stripe.refund", REFUND), ("zendesk.add_comment", NOTE))
    plan, _ = proposal(job_id)

    decided = check_policy(job_id, "support_refund", plan.steps)

    assert [(d.outcome, d.rule) for d in decided] == [
        ("allow", "autonomy_grant"),
        ("allow", "risk_class"),
    ]


def test_a_reviewers_token_turns_the_approval_into_an_approved_decision(
    planned_job: Callable[..., str],
) -> None:
    job_id = planned_job(("stripe.refund", OVER_THE_CAP), ticket=4823)
    approval_id = approve_first_step(job_id)
    plan, _ = proposal(job_id)

    decided = check_policy(job_id, "support_refund", plan.steps)

    assert [(d.outcome, d.rule) for d in decided] == [("allow", "approved")]
    assert decided[0].grant is not None
    assert decided[0].grant["approval_id"] == approval_id
    assert decided[0].grant["approvers"] == [REVIEWER]


# human_approved


def test_a_plan_nobody_approved_is_not_human_approved(planned_job: Callable[..., str]) -> None:
    job_id = planned_job(("stripe.refund", REFUND), ("zendesk.add_comment", NOTE))
    plan, _ = proposal(job_id)
    decided = check_policy(job_id, "support_refund", plan.steps)

    assert human_approved(job_id, plan.steps, decided) is False


def test_a_token_that_holds_makes_the_plan_human_approved_until_it_is_spent(
    planned_job: Callable[..., str],
) -> None:
    job_id = planned_job(("stripe.refund", OVER_THE_CAP), ticket=4823)
    approval_id = approve_first_step(job_id)
    plan, _ = proposal(job_id)
    # The policy's own decision, not the approved one: the token alone must tell.
    undecided = [policy.decide("support_refund", s.tool, s.args, job_id) for s in plan.steps]
    assert undecided[0].rule == "autonomy_cap"

    assert human_approved(job_id, plan.steps, undecided) is True

    with session_scope() as session:
        approvals.mark_used(session, approval_id)
        session.commit()
    spent, _ = proposal(job_id)
    assert spent.steps[0].approval is not None and spent.steps[0].approval.used
    assert human_approved(job_id, spent.steps, undecided) is False


# check_facts


def test_a_plan_rule_failing_escalates_before_any_fact_is_read(
    planned_job: Callable[..., str],
) -> None:
    job_id = planned_job(
        ("stripe.refund", dict(REFUND, amount=1000)), ("stripe.refund", dict(REFUND, amount=1500))
    )
    plan, view = proposal(job_id)
    decided = check_policy(job_id, "support_refund", plan.steps)
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")

    with pytest.raises(EscalationRequired) as stopped:
        check_facts(view, plan.steps, decided, rec)

    assert stopped.value.reason == "verification_failed"
    assert stopped.value.evidence == {
        "rule": "one_refund_per_charge",
        "charge_id": "ch_1001",
        "steps": ["s1", "s2"],
    }
    assert rec.calls == []


def test_a_failing_chain_escalates_with_the_step_and_the_rule(
    planned_job: Callable[..., str], sandbox: Sandbox
) -> None:
    # ch_1005 was refunded in full already (the sandbox's seed).
    refunded = dict(REFUND, charge_id="ch_1005", amount=1500)
    job_id = planned_job(("stripe.refund", refunded), ticket=4825, requester="erin@example.com")
    plan, view = proposal(job_id)
    decided = check_policy(job_id, "support_refund", plan.steps)
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")

    with pytest.raises(EscalationRequired) as stopped:
        check_facts(view, plan.steps, decided, rec)

    assert stopped.value.reason == "verification_failed"
    evidence = stopped.value.evidence
    assert (evidence["tool"], evidence["step_id"], evidence["rule"]) == (
        "stripe.refund",
        "s1",
        "not_already_refunded",
    )
    assert (evidence["amount"], evidence["amount_refunded"]) == (1500, 1500)
    assert "stripe.get_charge" in [c.tool for c in rec.calls]


def test_a_sound_plan_passes_every_rule_and_returns_the_facts_read(
    planned_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = planned_job(("stripe.refund", REFUND), ("zendesk.add_comment", NOTE))
    plan, view = proposal(job_id)
    decided = check_policy(job_id, "support_refund", plan.steps)
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")

    verdicts, facts = check_facts(view, plan.steps, decided, rec)

    rules = [v.rule for v in verdicts]
    assert all(v.ok for v in verdicts)
    assert rules[:2] == ["no_repeated_write", "one_refund_per_charge"]
    assert {"not_already_refunded", "charge_belongs_to_requester", "ticket_is_the_jobs"} <= set(
        rules
    )
    assert facts["charge"]["id"] == "ch_1001"


# The stage


def test_a_verified_plan_is_ready_with_its_decisions_and_verdict_on_record(
    planned_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = planned_job(("stripe.refund", REFUND), ("zendesk.add_comment", NOTE))
    plan, view = proposal(job_id)
    stage = VerifyProposalStage()
    result = stage.work(view, plan, CallRecorder(stage="verify_proposal"))

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        stage.apply(session, job, plan, result)
        session.commit()

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.current_step) == (lifecycle.READY, 0)
        events = session.query(AuditEvent).filter_by(job_id=job_id).order_by(AuditEvent.id).all()
        assert [e.kind for e in events[-4:]] == [
            "policy_decision",
            "policy_decision",
            "verdict",
            "transition",
        ]
        verdict = events[-2].payload
        assert verdict["stage"] == "proposal"
        assert verdict["passed"][-1] == "soft_check"
        assert verdict["soft_check"]["judged_by"] == "scorer"


def test_a_plan_a_reviewer_approved_skips_the_soft_check(
    planned_job: Callable[..., str], sandbox: Sandbox
) -> None:
    job_id = planned_job(
        ("stripe.refund", OVER_THE_CAP), ticket=4823, requester="carol@example.com"
    )
    approve_first_step(job_id)
    plan, view = proposal(job_id)

    decided, verdicts = VerifyProposalStage().work(
        view, plan, CallRecorder(stage="verify_proposal")
    )

    assert decided[0].rule == "approved"
    soft = verdicts[-1]
    assert (soft.ok, soft.rule, soft.evidence) == (True, "soft_check", {"judged_by": "human"})


# A reviewer's revision: the facts before the approval


def revise_first_step(job_id: str, amount: int) -> None:
    """Escalate the planned job for its first step's approval, and have a reviewer revise the
    refund to `amount` (the job goes back to `planned`, nothing approved)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        esc = escalation.escalate(
            session,
            job,
            reason="approval_required",
            detail="over the autonomy cap",
            evidence={"step_id": "s1", "rule": "autonomy_cap"},
            stage="verify_proposal",
            actor="test",
        )
        session.flush()
        body = decisions.Decision(decision="revise", args=dict(OVER_THE_CAP, amount=amount))
        done = decisions.decide(session, esc, body, REVIEWER)
        session.commit()
    assert (done["job_status"], done["revision"]) == (lifecycle.PLANNED, 2)


def test_a_revision_that_passes_its_facts_asks_for_approval_with_the_verdicts(
    planned_job: Callable[..., str], sandbox: Sandbox
) -> None:
    # Given carol's $90.00 refund revised by a reviewer to $60.00: still over the $50.00 cap
    job_id = planned_job(
        ("stripe.refund", OVER_THE_CAP), ticket=4823, requester="carol@example.com"
    )
    revise_first_step(job_id, 6000)
    plan, view = proposal(job_id)
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")

    # When the stage verifies it
    with pytest.raises(EscalationRequired) as stopped:
        VerifyProposalStage().work(view, plan, rec)

    # Then the facts were read, every rule passed, and the approval is asked for revision 2
    assert stopped.value.reason == "approval_required"
    evidence = stopped.value.evidence
    assert (evidence["step_id"], evidence["revision"], evidence["rule"]) == (
        "s1",
        2,
        "autonomy_cap",
    )
    verified = evidence["verified"]
    assert all(v["ok"] for v in verified)
    assert all(set(v) == {"rule", "ok", "detail", "evidence"} for v in verified)
    assert {"amount_within_refundable", "charge_belongs_to_requester"} <= {
        v["rule"] for v in verified
    }
    assert "stripe.get_charge" in [c.tool for c in rec.calls]


def test_a_revision_that_fails_its_facts_is_never_put_up_for_approval(
    planned_job: Callable[..., str], sandbox: Sandbox
) -> None:
    # Given the refund revised to $150.00 of a $120.00 charge
    job_id = planned_job(
        ("stripe.refund", OVER_THE_CAP), ticket=4823, requester="carol@example.com"
    )
    revise_first_step(job_id, 15000)
    plan, view = proposal(job_id)

    with pytest.raises(EscalationRequired) as stopped:
        VerifyProposalStage().work(view, plan, CallRecorder(stage="verify_proposal"))

    assert stopped.value.reason == "verification_failed"
    evidence = stopped.value.evidence
    assert (evidence["step_id"], evidence["rule"]) == ("s1", "amount_within_refundable")
    assert "verified" not in evidence


def test_a_plan_nobody_revised_asks_for_approval_before_reading_anything(
    planned_job: Callable[..., str],
) -> None:
    job_id = planned_job(
        ("stripe.refund", OVER_THE_CAP), ticket=4823, requester="carol@example.com"
    )
    plan, view = proposal(job_id)
    rec = CallRecorder(stage="verify_proposal", workflow="support_refund")

    with pytest.raises(EscalationRequired) as stopped:
        VerifyProposalStage().work(view, plan, rec)

    assert stopped.value.reason == "approval_required"
    assert "verified" not in stopped.value.evidence
    assert stopped.value.evidence["revision"] == 1
    assert rec.calls == []


def test_facts_checked_ahead_of_an_approval_judge_the_step_as_approved(
    redis_env: None, sandbox: Sandbox
) -> None:
    # Given a grant of Okta Admins to dave, which policy sends to a reviewer
    dave = next(u for u in seed.OKTA_USERS if u.login.startswith("dave@"))
    admins = next(g.id for g in seed.OKTA_GROUPS if g.name == "Okta Admins")
    args = {"user_id": dave.id, "group_id": admins}
    view = JobView(
        "job-grant",
        "it_request",
        {"target_login": dave.login, "group_id": admins},
        "manager@corp.example",
        1,
        0,
        1,
    )
    step = StoredStep(1, "s1", 2, "okta.add_to_group", args, "hash", "job-grant:s1:r2")
    decided = [policy.decide("it_request", step.tool, args, view.id)]
    assert decided[0].outcome == "approval_required"

    # When its facts are checked before the approval, the approval it waits for is not a
    # fact it fails (privileged_group_approved)
    verdicts, _ = check_facts(
        view, [step], decided, CallRecorder(stage="verify_proposal"), awaiting_approval=True
    )
    assert all(v.ok for v in verdicts)
    assert "privileged_group_approved" in [v.rule for v in verdicts]

    # While without an approval, nor one to come, the rule refuses it
    with pytest.raises(EscalationRequired) as stopped:
        check_facts(view, [step], decided, CallRecorder(stage="verify_proposal"))
    assert stopped.value.evidence["rule"] == "privileged_group_approved"
