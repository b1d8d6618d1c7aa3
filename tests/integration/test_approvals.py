"""Approvals: signed tokens bound to one exact action, reviewers deciding over the real API,
the executor and the proposal stage refusing what a token does not cover."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.controls import approvals
from app.core.db import session_scope
from app.intake import submissions
from app.jobs import lifecycle
from app.jobs.steps import ApprovalToken
from app.models import Approval, AuditEvent, Escalation, Job, PlanStep
from tests.support.env import policy_dir, reset_process_state
from tests.support.processes import wait_for
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.integration

KEYS = (
    "rev:reviewer:rev-key-0001,rev2:reviewer:rev-key-0002,adm:admin:adm-key-0003,"
    "req:requester:req-key-0004"
)
REV = {"Authorization": "Bearer rev-key-0001"}
REV2 = {"Authorization": "Bearer rev-key-0002"}
ACTION = "a" * 64


# --- tokens on their own ---------------------------------------------------------------------


def test_a_token_verifies_for_its_action_only(clean_env: Any) -> None:
    token, kid, _ = approvals.issue("t1", ACTION, ["key:rev"], ttl=60)
    ok = approvals.verify(token, ACTION)
    assert (ok.approval_id, ok.approvers, ok.key_id) == ("t1", ["key:rev"], kid)
    with pytest.raises(approvals.TokenRefused, match="another action"):
        approvals.verify(token, "b" * 64)


def test_forged_expired_unknown_key_and_used_tokens_are_refused(
    clean_env: Any, monkeypatch: Any
) -> None:
    token, _, _ = approvals.issue("t1", ACTION, ["key:rev"], ttl=60)
    payload, signature = token.split(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B") + "." + signature
    for bad, why in (
        (forged, "signature|malformed"),
        (payload + "." + signature[:-2] + "xx", "signature"),
        ("not-a-token", "malformed"),
        (approvals.issue("t2", ACTION, ["key:rev"], ttl=-1)[0], "expired"),
    ):
        with pytest.raises(approvals.TokenRefused, match=why):
            approvals.verify(bad, ACTION)
    with pytest.raises(approvals.TokenRefused, match="already used"):
        approvals.authorize(ApprovalToken("t1", token, used=True), ACTION)
    with pytest.raises(approvals.TokenRefused, match="no approval"):
        approvals.authorize(None, ACTION)
    # A key taken out of the list no longer verifies what it signed
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", "k2:second-key-0123456789")
    reset_process_state()
    with pytest.raises(approvals.TokenRefused, match="unknown signing key 'dev'"):
        approvals.verify(token, ACTION)


def test_keys_rotate_new_signs_old_still_verifies(clean_env: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", "k1:first-key-0123456789")
    reset_process_state()
    old, kid, _ = approvals.issue("t1", ACTION, ["key:rev"], ttl=60)
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", "k2:second-key-0123456789,k1:first-key-0123456789")
    reset_process_state()
    new, new_kid, _ = approvals.issue("t2", ACTION, ["key:rev"], ttl=60)
    assert (kid, new_kid) == ("k1", "k2")
    assert approvals.verify(old, ACTION).key_id == "k1"
    assert approvals.verify(new, ACTION).key_id == "k2"


# --- reviewers deciding, end to end -------------------------------------------------------------


@pytest.fixture
def fleet(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, start_api: Any, monkeypatch: Any
) -> str:
    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    reset_process_state()
    start_worker()
    return str(start_api())


def submit_ticket(ticket: int, user: int, delivery: str, requester: str | None = None) -> str:
    job_id, _ = submissions.submit(
        {
            "workflow": "support_refund",
            "source": "zendesk",
            "external_id": str(ticket),
            "delivery_id": delivery,
            "requester": requester or f"zendesk-user:{user}",
            "input": {"ticket_id": ticket},
        },
        submitted_by="test",
    )
    return job_id


def submit(delivery: str, requester: str = "zendesk-user:103") -> str:
    # Ticket 4823 asks for 90.00 USD: over the 50.00 autonomy cap, so it needs an approval.
    return submit_ticket(4823, 103, delivery, requester)


def settled(job_id: str) -> Job:
    def done() -> Job | None:
        with session_scope() as s:
            job = s.get(Job, job_id)
            assert job is not None
            return job if job.status in lifecycle.TERMINAL | {lifecycle.ESCALATED} else None

    found: Job = wait_for(done, timeout=60, what=f"job {job_id} to settle")
    return found


def open_escalation(job_id: str) -> Escalation:
    with session_scope() as s:
        return s.scalars(
            select(Escalation).where(Escalation.job_id == job_id, Escalation.status == "open")
        ).one()


def decide(api: str, esc_id: int, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{api}/v1/escalations/{esc_id}/decision", json=body, headers=headers)


def test_an_approved_refund_runs_once_under_its_token(fleet: str, sandbox: Sandbox) -> None:
    job_id = submit("appr-1")
    assert settled(job_id).status == lifecycle.ESCALATED
    esc = open_escalation(job_id)
    assert esc.reason == "approval_required" and esc.evidence["step_id"] == "s1"
    assert sandbox.applied("stripe") == []
    # When a reviewer approves through the API
    resp = decide(fleet, esc.id, {"decision": "approve", "note": "customer is right"}, REV)
    assert resp.status_code == 200, resp.text
    assert resp.json()["approvers"] == ["key:rev"]
    # Then the exact action runs, once, and the token is spent
    assert settled(job_id).status == lifecycle.COMPLETED
    assert [(w["body"]["charge"], int(w["body"]["amount"])) for w in sandbox.applied("stripe")] == [
        ("ch_1003", 9000)
    ]
    with session_scope() as s:
        [approval] = s.scalars(select(Approval).where(Approval.job_id == job_id)).all()
        assert approval.used_at is not None and approval.approvers == ["key:rev"]
        kinds = s.scalars(select(AuditEvent.kind).where(AuditEvent.job_id == job_id)).all()
        assert "approval" in kinds
    # And a second decision on the same escalation is refused
    again = decide(fleet, esc.id, {"decision": "approve"}, REV2)
    assert again.status_code == 409


def test_reject_needs_a_reason_code_and_writes_nothing(fleet: str, sandbox: Sandbox) -> None:
    job_id = submit("rej-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    assert decide(fleet, esc.id, {"decision": "reject"}, REV).status_code == 422
    resp = decide(fleet, esc.id, {"decision": "reject", "reason_code": "wrong_amount"}, REV)
    assert resp.status_code == 200 and resp.json()["job_status"] == lifecycle.REJECTED
    assert settled(job_id).status == lifecycle.REJECTED
    assert sandbox.applied() == []


def test_the_requester_cannot_approve_their_own_job(fleet: str) -> None:
    job_id = submit("self-1", requester="key:rev")
    esc = (settled(job_id), open_escalation(job_id))[1]
    resp = decide(fleet, esc.id, {"decision": "approve"}, REV)
    assert resp.status_code == 403 and "separation of duties" in resp.json()["detail"]
    assert decide(fleet, esc.id, {"decision": "approve"}, REV2).status_code == 200


def decide_here(esc_id: int, actor: str, **body: Any) -> dict[str, Any]:
    """Decide in this process, committing without publishing the job's next stage yet."""
    from app.human import decisions

    with session_scope() as s:
        esc = s.get(Escalation, esc_id)
        assert esc is not None
        result = decisions.decide(s, esc, decisions.Decision(**body), actor)
        s.commit()
    return result


def _escalations(job_id: str) -> list[Escalation]:
    with session_scope() as s:
        return list(s.scalars(select(Escalation).where(Escalation.job_id == job_id)).all())


def test_a_token_for_other_arguments_is_refused_and_says_why(fleet: str, sandbox: Sandbox) -> None:
    from app.jobs import outbox

    job_id = submit("tamper-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    decide_here(esc.id, "key:rev", decision="approve")
    # Given the step's arguments change after the approval (not through an edit)
    with session_scope() as s:
        step = s.scalars(select(PlanStep).where(PlanStep.job_id == job_id)).first()
        assert step is not None
        step.args = {**step.args, "amount": 8000}
        s.commit()
    outbox.publish_for_job(job_id)

    # Then the re-check refuses the token, says why, and the job is back with a human
    def refusal() -> Escalation | None:
        return next((e for e in _escalations(job_id) if e.evidence.get("token_refused")), None)

    refused = wait_for(refusal, timeout=60, what="the token to be refused")
    assert "another action" in refused.evidence["token_refused"]
    assert settled(job_id).status == lifecycle.ESCALATED
    assert sandbox.applied("stripe") == []


def test_above_the_two_person_threshold_two_different_reviewers_must_approve(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    from app.jobs import outbox

    def threshold(policy: dict[str, Any]) -> None:
        refund = policy["workflows"]["support_refund"]["tools"]["stripe.refund"]
        refund["two_person_above"] = {"usd": 5000}

    # The whole fleet (this process and the worker) runs under the policy with the threshold
    policy_dir(tmp_path, monkeypatch, threshold)
    start_worker()
    job_id = submit("two-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    assert decide_here(esc.id, "key:rev", decision="approve")["awaiting"] == "second_reviewer"
    # The same reviewer again does not count twice
    assert decide_here(esc.id, "key:rev", decision="approve")["awaiting"] == "second_reviewer"
    done = decide_here(esc.id, "key:rev2", decision="approve")
    assert done["approvers"] == ["key:rev", "key:rev2"]
    outbox.publish_for_job(job_id)
    assert settled(job_id).status == lifecycle.COMPLETED
    assert len(sandbox.applied("stripe")) == 1


def test_a_policy_change_after_the_approval_voids_it(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    import time

    import yaml

    from app.jobs import outbox

    config = policy_dir(tmp_path, monkeypatch)
    start_worker()
    job_id = submit("policy-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    decide_here(esc.id, "key:rev", decision="approve")
    # When the workflow's policy changes before the approved action runs
    path = config / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["workflows"]["support_refund"]["tools"]["stripe.refund"]["allowed_reasons"].append(
        "fraudulent"
    )
    time.sleep(0.01)  # a new mtime, so the worker re-reads the file
    path.write_text(yaml.safe_dump(policy))
    outbox.publish_for_job(job_id)

    # Then the approval does not carry over: the job is back with a human, nothing written
    def refusal() -> Escalation | None:
        return next((e for e in _escalations(job_id) if e.evidence.get("token_refused")), None)

    refused = wait_for(refusal, timeout=60, what="the token to be refused")
    assert refused.evidence["policy_version"] != esc.evidence["policy_version"]
    assert sandbox.applied("stripe") == []


# --- rollout: shadow and canary ----------------------------------------------------------------


def test_canary_arms_are_stable_by_job_id_and_proportional() -> None:
    import uuid

    from app.controls.policy import WorkflowPolicy, rollout_arm

    ids = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(2000)]
    canary = WorkflowPolicy(stage="canary", canary_percent=30, allowed_tools=[])
    arms = [rollout_arm(canary, i) for i in ids]
    assert arms == [rollout_arm(canary, i) for i in ids]  # stable
    assert 0.25 < arms.count("live") / len(ids) < 0.35
    for stage, percent, expected in (
        ("canary", 0, "shadow"),
        ("canary", 100, "live"),
        ("live", 0, "live"),
        ("shadow", 100, "shadow"),
    ):
        wf = WorkflowPolicy(stage=stage, canary_percent=percent, allowed_tools=[])
        assert {rollout_arm(wf, i) for i in ids[:50]} == {expected}


def _stage(stage: str, percent: int = 0) -> Any:
    def change(policy: dict[str, Any]) -> None:
        policy["workflows"]["support_refund"]["stage"] = stage
        policy["workflows"]["support_refund"]["canary_percent"] = percent

    return change


def test_shadow_mode_writes_nothing_until_a_reviewer_executes_and_records_agreement(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    from app.jobs import outbox
    from app.reporting import kpis

    policy_dir(tmp_path, monkeypatch, _stage("shadow"))
    start_worker()
    # Given two refund jobs in a workflow running in shadow
    agreed, disagreed = submit_ticket(4821, 101, "shadow-1"), submit_ticket(4822, 102, "shadow-2")
    for job_id in (agreed, disagreed):
        assert settled(job_id).status == lifecycle.ESCALATED
        esc = open_escalation(job_id)
        assert (esc.reason, esc.evidence["tool"]) == ("shadow_proposal", "stripe.refund")
    # Then nothing was written downstream
    assert sandbox.applied() == []
    # When a reviewer executes one (each write is proposed in turn) and rejects the other
    for _ in range(2):
        decide_here(open_escalation(agreed).id, "key:rev", decision="approve")
        outbox.publish_for_job(agreed)
        wait_for(lambda: settled(agreed).status != lifecycle.PLANNED, timeout=60)
    assert settled(agreed).status == lifecycle.COMPLETED
    decide_here(
        open_escalation(disagreed).id, "key:rev", decision="reject", reason_code="wrong_amount"
    )
    # Then only the executed proposal wrote, under the reviewer's approval
    assert [w["body"]["charge"] for w in sandbox.applied("stripe")] == ["ch_1001"]
    assert len(sandbox.applied("zendesk")) == 1
    with session_scope() as s:
        approvers = s.scalars(select(Approval.approvers).where(Approval.job_id == agreed)).all()
        assert approvers == [["key:rev"], ["key:rev"]]
        # And the agreement ledger has both outcomes
        rows = {(r["tool"]): r for r in kpis.shadow_agreement(s)}
    assert (rows["stripe.refund"]["approved"], rows["stripe.refund"]["rejected"]) == (1, 1)
    assert rows["stripe.refund"]["agreement_rate"] == 0.5
    assert rows["stripe.refund"]["rejection_reasons"] == {"wrong_amount": 1}
    assert rows["zendesk.add_comment"]["approved"] == 1


def test_a_full_canary_runs_live(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    policy_dir(tmp_path, monkeypatch, _stage("canary", 100))
    start_worker()
    job_id = submit_ticket(4821, 101, "canary-1")
    assert settled(job_id).status == lifecycle.COMPLETED
    assert len(sandbox.applied("stripe")) == 1


def test_opsgate_report_prints_the_promotion_evidence(pg_env: Any) -> None:
    import json
    import subprocess
    import sys

    from tests.support.env import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "app", "report", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout)
    assert data["rollout"]["support_refund"]["stage"] == "live"
    assert data["shadow"] == [] and data["volumes"] == []


# --- the human queue: claims and deadlines -----------------------------------------------------


def test_a_claimed_escalation_can_only_be_decided_by_its_claimant(fleet: str) -> None:
    job_id = submit("claim-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    claimed = httpx.post(f"{fleet}/v1/escalations/{esc.id}/claim", headers=REV)
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "key:rev"
    # Another reviewer can neither take it nor decide it while the claim holds
    assert httpx.post(f"{fleet}/v1/escalations/{esc.id}/claim", headers=REV2).status_code == 409
    other = decide(fleet, esc.id, {"decision": "approve"}, REV2)
    assert other.status_code == 409 and "claimed by key:rev" in other.json()["detail"]
    # The claimant decides
    assert decide(fleet, esc.id, {"decision": "approve"}, REV).status_code == 200
    assert settled(job_id).status == lifecycle.COMPLETED


def test_an_undecided_approval_expires_and_the_action_is_not_taken(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, monkeypatch: Any
) -> None:
    from app.stages import reaper

    monkeypatch.setenv("OPSGATE_DECISION_DEADLINE", "1")
    reset_process_state()
    start_worker()
    job_id = submit("expire-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    assert esc.deadline is not None
    # When the deadline passes and the reaper runs
    wait_for(lambda: reaper.expire_escalations() or None, timeout=30, what="the expiry")
    # Then the job is rejected as expired, the escalation closed, and nothing was written
    assert settled(job_id).status == lifecycle.REJECTED
    with session_scope() as s:
        closed = s.get(Escalation, esc.id)
        assert closed is not None and (closed.status, closed.decision) == ("closed", "expire")
        job = s.get(Job, job_id)
        assert job is not None and (job.status_reason or "").startswith("expired:")
    assert sandbox.applied() == []
    # And a late decision is refused
    from app.errors import ConflictError

    with pytest.raises(ConflictError):
        decide_here(esc.id, "key:rev", decision="approve")


# --- daily caps ---------------------------------------------------------------------------------


def test_daily_caps_hold_per_customer_and_for_the_fleet_and_never_double_count(
    pg_env: Any,
) -> None:
    from app.controls import caps
    from app.controls.policy import DailyCaps

    limits = DailyCaps(per_customer={"usd": 5000}, fleet={"usd": 8000})

    def reserve(key: str, customer: str, amount: int) -> str | None:
        scopes = caps.scopes_for("support_refund", "stripe.refund", customer, limits, "usd")
        over = caps.reserve(key, scopes, "usd", amount)
        return over.rule if over else None

    assert reserve("k1", "zendesk-user:1", 3000) is None
    assert reserve("k1", "zendesk-user:1", 3000) is None  # the same step: no second share
    assert reserve("k2", "zendesk-user:1", 3000) == "daily_cap_customer"
    assert reserve("k3", "zendesk-user:2", 3000) is None
    assert reserve("k4", "zendesk-user:3", 3000) == "daily_cap_fleet"
    assert caps.used("support_refund:stripe.refund:fleet", "usd") == 6000
    assert caps.used("support_refund:stripe.refund:customer:zendesk-user:1", "usd") == 3000


def test_concurrent_jobs_cannot_both_spend_the_last_of_a_cap(pg_env: Any) -> None:
    import threading

    from app.controls import caps

    scopes = [("daily_cap_fleet", "wf:tool:fleet", 5000)]
    results: list[bool] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        ok = caps.reserve(f"race-{n}", scopes, "usd", 1000) is None
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 5
    assert caps.used("wf:tool:fleet", "usd") == 5000


def test_past_the_fleets_daily_cap_a_refund_waits_for_a_human(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    from app.jobs import outbox

    def cap(policy: dict[str, Any]) -> None:
        refund = policy["workflows"]["support_refund"]["tools"]["stripe.refund"]
        refund["daily_caps"] = {"fleet": {"usd": 5000}}

    policy_dir(tmp_path, monkeypatch, cap)
    start_worker()
    # Given a first refund of 25.00 USD that fits the 50.00 fleet cap
    first = submit_ticket(4821, 101, "cap-1")
    assert settled(first).status == lifecycle.COMPLETED
    # When a second, 40.00 USD, would take the fleet past it (each is within autonomy)
    second = submit_ticket(4822, 102, "cap-2")
    assert settled(second).status == lifecycle.ESCALATED
    esc = open_escalation(second)
    assert (esc.reason, esc.evidence["rule"], esc.evidence["used"]) == (
        "approval_required",
        "daily_cap_fleet",
        2500,
    )
    assert len(sandbox.applied("stripe")) == 1
    # Then a reviewer's approval lets that one action past the cap
    decide_here(esc.id, "key:rev", decision="approve")
    outbox.publish_for_job(second)
    assert settled(second).status == lifecycle.COMPLETED
    assert len(sandbox.applied("stripe")) == 2


def test_only_the_roles_a_workflow_names_may_start_it(
    pg_env: Any, start_api: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    def admins_only(policy: dict[str, Any]) -> None:
        policy["workflows"]["support_refund"]["requester_roles"] = ["admin"]

    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    policy_dir(tmp_path, monkeypatch, admins_only)
    api = start_api()
    body = {
        "workflow": "support_refund",
        "external_id": "r-1",
        "requester": "zendesk-user:101",
        "input": {"ticket_id": 4821},
    }
    refused = httpx.post(
        f"{api}/v1/jobs", json=body, headers={"Authorization": "Bearer req-key-0004"}
    )
    assert refused.status_code == 403 and "requester_roles" in refused.json()["detail"]
    accepted = httpx.post(
        f"{api}/v1/jobs", json=body, headers={"Authorization": "Bearer adm-key-0003"}
    )
    assert accepted.status_code == 202


def test_approve_with_edited_arguments_runs_a_new_revision_under_a_new_key(
    fleet: str, sandbox: Sandbox
) -> None:
    job_id = submit("edit-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    with session_scope() as s:
        original = s.scalars(
            select(PlanStep).where(PlanStep.job_id == job_id, PlanStep.step_id == "s1")
        ).one()
        assert original is not None
        args = dict(original.args)
    # Invalid edits are refused and change nothing
    bad = decide(fleet, esc.id, {"decision": "edit", "args": {**args, "amount": -1}}, REV)
    assert bad.status_code == 422
    # When the reviewer approves a smaller refund than the agent proposed
    resp = decide(fleet, esc.id, {"decision": "edit", "args": {**args, "amount": 4000}}, REV)
    assert resp.status_code == 200, resp.text
    # Then that action (verified again) runs once, under the new revision's key
    assert settled(job_id).status == lifecycle.COMPLETED
    [refund] = sandbox.applied("stripe")
    assert int(refund["body"]["amount"]) == 4000
    assert refund["idempotency_key"] == f"opsgate-{job_id}-s1-r2"
    with session_scope() as s:
        step = s.scalars(
            select(PlanStep).where(PlanStep.job_id == job_id, PlanStep.step_id == "s1")
        ).one()
        assert step is not None and (step.revision, step.args["amount"]) == (2, 4000)
        closed = s.get(Escalation, esc.id)
        assert closed is not None and closed.decision == "edit"
        kinds = s.scalars(select(AuditEvent.kind).where(AuditEvent.job_id == job_id)).all()
        assert "step_revised" in kinds


def test_a_policy_change_between_plan_and_execution_is_caught_by_the_executor(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    import time

    import yaml

    from app.api.killswitch import SwitchChange, apply_change
    from app.controls import killswitch

    config = policy_dir(tmp_path, monkeypatch)
    start_worker()
    # Given a 25.00 USD refund verified under a 50.00 cap and held at the executor's door
    with session_scope() as s:
        killswitch.engage(s, "tool:stripe.refund", "key:adm", "hold for the test")
        s.commit()
    job_id = submit_ticket(4821, 101, "change-1")

    def parked() -> bool:
        with session_scope() as s:
            job = s.get(Job, job_id)
            return job is not None and job.status == lifecycle.PAUSED

    wait_for(parked, timeout=60, what="the job to park at the kill switch")
    # When the autonomy cap drops to 10.00 USD before it runs
    policy = yaml.safe_load((config / "policy.yaml").read_text())
    policy["workflows"]["support_refund"]["tools"]["stripe.refund"]["autonomy"]["max_amount"][
        "usd"
    ] = 1000
    time.sleep(0.01)
    (config / "policy.yaml").write_text(yaml.safe_dump(policy))
    with session_scope() as s:
        apply_change(
            s, SwitchChange(engaged=False, tool="stripe.refund", reason="go on"), "key:adm"
        )
    # Then the executor's re-check stops the refund: a human must approve it now
    assert settled(job_id).status == lifecycle.ESCALATED
    esc = open_escalation(job_id)
    assert (esc.reason, esc.stage, esc.evidence["rule"]) == (
        "approval_required",
        "execute",
        "autonomy_cap",
    )
    assert sandbox.applied("stripe") == []


def test_the_cli_decides_as_the_operator_and_refuses_bad_input_in_one_line(
    pg_env: Any, sandbox: Sandbox, start_worker: Any
) -> None:
    import subprocess
    import sys

    from tests.support.env import ROOT

    def opsgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True
        )

    start_worker()
    job_id = submit("cli-1")
    esc = (settled(job_id), open_escalation(job_id))[1]
    bad = opsgate("reject", str(esc.id), "--reason", "because")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert opsgate("approve", "999999").returncode == 2
    claimed = opsgate("escalations", "claim", str(esc.id))
    assert claimed.returncode == 0 and "claimed by cli:" in claimed.stdout
    done = opsgate("approve", str(esc.id), "--note", "checked")
    assert done.returncode == 0, done.stderr
    assert settled(job_id).status == lifecycle.COMPLETED
    with session_scope() as s:
        closed = s.get(Escalation, esc.id)
        assert closed is not None and (closed.decided_by or "").startswith("cli:")
    again = opsgate("approve", str(esc.id))
    assert again.returncode == 1 and "already decided (approve)" in again.stderr
