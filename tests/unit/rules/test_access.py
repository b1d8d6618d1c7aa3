"""app/rules/access.py: the rules-tier plans for IT requests, on hand-built contexts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.controls import policy
from app.jobs.steps import Plan
from app.rules.access import plan_it_request
from app.stages.plan import validate_plan
from app.workflows import registry as rules

ALICE, BOB = "00u1alicesVQijwX60h7", "00u2bobrKpgaNmq0q0h7"
ENGINEERING, ADMINS, VPN = "00g1engineerpowCP0h7", "00g3adminsqxRccta0h7", "00g4vpnkpL4NFJLRn0h7"


@pytest.fixture(autouse=True)
def _repo_config(clean_env: Path) -> None:
    """The repository's config/policy.yaml."""


def user(
    user_id: str = ALICE, login: str = "alice@example.com", status: str = "ACTIVE"
) -> dict[str, Any]:
    return {"id": user_id, "status": status, "profile": {"login": login, "email": login}}


def group(group_id: str, name: str) -> dict[str, Any]:
    return {"id": group_id, "type": "OKTA_GROUP", "profile": {"name": name}}


def context(
    request_type: str,
    target: dict[str, Any] | None = None,
    requester: dict[str, Any] | None = None,
    groups: list[dict[str, Any]] | None = None,
    asker: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    target = user() if target is None else target
    login = (target.get("profile") or {}).get("login", "nobody@example.com")
    # The job's requester: the Okta requester's login when one is given, else bob.
    asker = asker or ((requester or {}).get("profile") or {}).get("login") or "bob@example.com"
    return {
        "input": {"request_type": request_type, "target_login": login, **fields},
        "requester": asker,
        "target": target,
        "requester_user": requester,
        "target_groups": groups or [],
    }


def planned(ctx: dict[str, Any]) -> Plan:
    """The plan, which must be valid and allowed by the repository's policy."""
    plan = plan_it_request(ctx)
    assert plan is not None
    assert plan.workflow == "it_request" and plan.confidence == 0.95
    validate_plan(plan, "it_request")
    for step in plan.steps:
        assert step.rationale and step.evidence
        assert policy.decide("it_request", step.tool, step.args).outcome != "block"
    return plan


def escalation(plan: Plan) -> str:
    assert plan.steps == [] and plan.escalate is not None
    return plan.escalate.reason


def test_an_unknown_target_is_left_to_the_model_tiers() -> None:
    ctx = context("password_reset")
    ctx["target"] = None
    assert plan_it_request(ctx) is None


# --- password resets -----------------------------------------------------------------------


def test_a_password_reset_for_ones_own_account() -> None:
    plan = planned(context("password_reset", requester=user()))
    [step] = plan.steps
    assert (step.tool, step.args) == ("okta.reset_password", {"user_id": ALICE})
    assert step.evidence == [
        f"okta-user:{ALICE}",
        f"requester:okta-user:{ALICE}",
        "policy:access#password-resets",
    ]
    assert "their own account" in step.rationale
    # The audit gets ids, not logins
    assert "alice@example.com" not in plan.summary


def test_a_reset_asked_by_someone_else_escalates_with_the_verifiers_rule() -> None:
    # The verifier would refuse it (requester_is_the_user): no plan certain to fail is made
    plan = planned(context("password_reset", requester=user(BOB, "bob@example.com")))
    assert escalation(plan) == "the requester asks to reset someone else's password"
    assert plan.escalate is not None and plan.escalate.rule == "requester_is_the_user"
    assert plan.escalate.refusal and plan.escalate.tool == "okta.reset_password"


def test_a_requester_unknown_to_okta_is_said_so() -> None:
    [step] = planned(context("group_access", requester=None, group_id=VPN)).steps
    assert "not a known Okta user" in step.rationale
    assert not any(e.startswith("requester:") for e in step.evidence)


@pytest.mark.parametrize("status", ["RECOVERY", "LOCKED_OUT", "PASSWORD_EXPIRED"])
def test_a_locked_or_recovering_account_can_be_reset(status: str) -> None:
    plan = planned(context("password_reset", user(status=status), asker="alice@example.com"))
    assert plan.steps[0].tool == "okta.reset_password"


@pytest.mark.parametrize("status", ["SUSPENDED", "DEPROVISIONED", "STAGED"])
def test_no_reset_for_an_account_that_is_not_active(status: str) -> None:
    plan = planned(context("password_reset", user(status=status), asker="alice@example.com"))
    assert escalation(plan) == f"the account is {status}, not active"
    assert plan.escalate is not None and plan.escalate.rule == "user_active"


def test_a_short_name_for_the_target_escalates_as_the_verifier_would() -> None:
    ctx = context("offboarding")
    ctx["input"]["target_login"] = "alice"
    plan = planned(ctx)
    assert plan.escalate is not None and plan.escalate.rule == "user_is_the_target"


def test_a_privileged_self_grant_escalates_at_planning() -> None:
    plan = planned(context("group_access", requester=user(), group_id=ADMINS))
    assert plan.escalate is not None and plan.escalate.rule == "no_privileged_self_grant"


# --- group access --------------------------------------------------------------------------


def test_group_access_adds_the_user_to_the_group() -> None:
    ctx = context(
        "group_access",
        requester=user(BOB, "bob@example.com"),
        groups=[group(ENGINEERING, "Engineering")],
        group_id=VPN,
        justification="Working remotely from next week.",
    )
    [step] = planned(ctx).steps
    assert (step.tool, step.args) == ("okta.add_to_group", {"user_id": ALICE, "group_id": VPN})
    assert f"group:{VPN}" in step.evidence and "policy:access#group-membership" in step.evidence
    assert '"Working remotely from next week."' in step.rationale


def test_a_privileged_group_is_planned_and_left_to_the_approval_policy() -> None:
    [step] = planned(context("group_access", group_id=ADMINS)).steps
    assert step.args["group_id"] == ADMINS
    decision = policy.decide("it_request", step.tool, step.args)
    assert decision.outcome == "approval_required"


def test_a_member_already_needs_nothing() -> None:
    ctx = context("group_access", groups=[group(VPN, "VPN Users")], group_id=VPN)
    plan = planned(ctx)
    assert escalation(plan) == "already a member: nothing to do"
    assert "VPN Users" in plan.summary


def test_a_suspended_user_is_not_granted_access() -> None:
    plan = planned(context("group_access", user(status="SUSPENDED"), group_id=VPN))
    assert escalation(plan) == "the account is SUSPENDED, not active"


def test_group_access_without_a_group_is_not_planned() -> None:
    assert plan_it_request(context("group_access")) is None


# --- offboarding ---------------------------------------------------------------------------


def test_offboarding_suspends_the_user() -> None:
    ctx = context("offboarding", justification="Last day was Friday " + "x" * 400)
    [step] = planned(ctx).steps
    assert (step.tool, step.args) == ("okta.suspend_user", {"user_id": ALICE})
    assert "policy:access#suspension" in step.evidence
    assert "Last day was Friday" in step.rationale and "…" in step.rationale
    assert len(step.rationale) < 500
    # Suspension is irreversible: the policy sends it to a human, whoever asked
    assert policy.decide("it_request", step.tool, step.args).outcome == "approval_required"


def test_offboarding_without_a_justification_says_so() -> None:
    [step] = planned(context("offboarding")).steps
    assert "No justification was given." in step.rationale


def test_an_already_suspended_user_needs_nothing() -> None:
    plan = planned(context("offboarding", user(status="SUSPENDED")))
    assert escalation(plan) == "already suspended: nothing to do"


def test_an_account_okta_cannot_suspend_goes_to_a_person() -> None:
    plan = planned(context("offboarding", user(status="DEPROVISIONED")))
    assert "Okta suspends only ACTIVE accounts" in escalation(plan)


# --- dispatch ------------------------------------------------------------------------------


def test_the_dispatcher_plans_it_requests() -> None:
    plan = rules.plan("it_request", context("offboarding"))
    assert plan is not None and plan.steps[0].tool == "okta.suspend_user"
    assert rules.plan("it_request", context("unlock_laptop")) is None
    assert rules.plan("no_such_workflow", context("offboarding")) is None
