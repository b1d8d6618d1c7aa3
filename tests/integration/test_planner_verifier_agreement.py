"""Plans their own verifiers accept: for every state the sandbox can hold that a rules planner
plans for, the plan's writes pass their verifier chains, or the planner escalated at planning
time with the rule the chain would fail on. No plan certain to fail.

Real sandbox over HTTP; the context and the facts are read through a CallRecorder as the
plan and verify stages read them (real PostgreSQL and Redis behind the gates).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from app.controls import policy
from app.controls.calls import CallRecorder
from app.errors import EscalationRequired
from app.jobs.steps import Plan
from app.stages.plan import gather_context
from app.stages.runner import JobView
from app.workflows import registry as rules
from tests.support.sandbox import Sandbox
from tools.okta.lifecycle import ALLOWED_STATUSES
from tools.sandbox import seed
from tools.sandbox.world import OKTA_STATUSES
from verifiers.base import EarlierWrite, Facts, Verdict, run_chain
from verifiers.chains import CHAINS
from verifiers.common import COMMON_RULES

pytestmark = pytest.mark.integration

GROUP = {g.name: g.id for g in seed.OKTA_GROUPS}
ADMIN = "admin@corp.example"
DAY = 86_400


@pytest.fixture
def sb(pg_env: dict[str, str], sandbox: Sandbox) -> Sandbox:
    return sandbox


def post(sb: Sandbox, path: str, body: list[dict[str, Any]]) -> None:
    httpx.post(f"{sb.url}/_sandbox/{path}", json=body, timeout=10).raise_for_status()


def plan_for(job: JobView) -> Plan | None:
    rec = CallRecorder(stage="plan", workflow=job.workflow)
    context = gather_context(job, rec)
    if job.workflow == "support_refund":
        context["comments"] = []
    return rules.plan(job.workflow, context)


def verify(
    job: JobView, tool: str, args: dict[str, Any], earlier: list[EarlierWrite]
) -> Verdict | None:
    """The step's chain as the verify stage runs it; an approval is assumed where the policy
    asks for one (a reviewer's, after planning)."""
    decision = policy.decide(job.workflow, tool, args)
    assert decision.outcome != "block", decision
    facts = Facts(
        tool,
        args,
        job.input,
        workflow=job.workflow,
        requester=job.requester,
        approved=decision.outcome == "approval_required",
        earlier=earlier,
    )
    failure, _ = run_chain(COMMON_RULES, facts)
    if failure is None:
        CHAINS[tool].gather(CallRecorder(stage="verify_proposal", workflow=job.workflow), facts)
        failure, _ = run_chain(CHAINS[tool].rules, facts)
    return failure


def agree(job: JobView, plan: Plan | None, would_be: tuple[str, dict[str, Any]]) -> str:
    """Assert the agreement; returns what happened ("planned" or the escalation's rule)."""
    assert plan is not None, job.input
    if plan.escalate is None:
        earlier: list[EarlierWrite] = []
        for step in plan.steps:
            failure = verify(job, step.tool, step.args, earlier)
            assert failure is None, (job.input, step.tool, failure)
            earlier.append(EarlierWrite(step.tool, step.args))
        return "planned"
    rule = plan.escalate.rule
    assert rule, f"a rules-tier escalation names the rule: {plan.escalate}"
    failure = verify(job, *would_be, [])
    assert failure is not None and failure.rule == rule, (job.input, rule, failure)
    return rule


# --- Okta: every status x every request type ------------------------------------------------


def okta_user(n: int, status: str, groups: list[str]) -> dict[str, Any]:
    return {
        "id": f"00u9agreement{n:03d}x0h7",
        "login": f"user{n}@corp.example",
        "first_name": "User",
        "last_name": str(n),
        "status": status,
        "groups": groups,
    }


REQUESTS = {
    "reset": ("password_reset", None, True),
    "grant": ("group_access", "VPN Users", False),
    "grant member": ("group_access", "Engineering", False),
    "grant privileged": ("group_access", "Okta Admins", False),
    "self grant privileged": ("group_access", "Okta Admins", True),
    "reset for another": ("password_reset", None, False),
    "offboarding": ("offboarding", None, False),
}


def test_it_plans_agree_with_their_verifiers_for_every_status(sb: Sandbox) -> None:
    users = [okta_user(n, status, [GROUP["Engineering"]]) for n, status in enumerate(OKTA_STATUSES)]
    post(sb, "okta/users", users)
    outcomes: dict[tuple[str, str], str] = {}
    for user in users:
        for name, (kind, group, own) in REQUESTS.items():
            job_input: dict[str, Any] = {"request_type": kind, "target_login": user["login"]}
            if group:
                job_input["group_id"] = GROUP[group]
            if kind == "offboarding":
                job_input["justification"] = "Last day was Friday."
            job = JobView(
                "job-agree", "it_request", job_input, user["login"] if own else ADMIN, 1, 0, 1
            )
            tool = {
                "password_reset": "okta.reset_password",
                "group_access": "okta.add_to_group",
                "offboarding": "okta.suspend_user",
            }[kind]
            args = {"user_id": user["id"], **({"group_id": GROUP[group]} if group else {})}
            outcomes[(user["status"], name)] = agree(job, plan_for(job), (tool, args))
    # The state table holds: a reset recovers LOCKED_OUT and PASSWORD_EXPIRED users, only
    # ACTIVE users are suspended
    for status in OKTA_STATUSES:
        reset_ok = status in ALLOWED_STATUSES["okta.reset_password"]
        assert outcomes[(status, "reset")] == ("planned" if reset_ok else "user_active")
        suspend_ok = status in ALLOWED_STATUSES["okta.suspend_user"]
        assert outcomes[(status, "offboarding")] == ("planned" if suspend_ok else "user_active")
    assert outcomes[("LOCKED_OUT", "reset")] == "planned"
    assert outcomes[("ACTIVE", "grant member")] == "not_already_member"
    assert outcomes[("ACTIVE", "grant privileged")] == "planned"
    assert outcomes[("ACTIVE", "self grant privileged")] == "no_privileged_self_grant"
    assert outcomes[("ACTIVE", "reset for another")] == "requester_is_the_user"


# --- Refunds: charge states ---------------------------------------------------------------

CHARGES = {
    # name: (charge overrides, ticket text, expected outcome)
    "fresh": ({}, "Please refund $25.00 for charge {id}.", "planned"),
    "old": ({"created_days": 45}, "Please refund $25.00 for charge {id}.", "refund_within_window"),
    "disputed": (
        {"disputed": True},
        "Please refund $25.00 for charge {id}.",
        "charge_not_disputed",
    ),
    "refunded": (
        {"amount_refunded": 2500},
        "Please refund $25.00 for charge {id}.",
        "not_already_refunded",
    ),
    "double": (
        {"twin": True},
        "I was charged twice. Please refund $25.00 for charge {id}.",
        "planned",
    ),
    "double claimed, no twin": (
        {},
        "I was charged twice. Please refund $25.00 for charge {id}.",
        "planned",
    ),
    "wrong currency": ({}, "Please refund 25.00 EUR for charge {id}.", "currency_matches"),
}


def test_refund_plans_agree_with_their_verifiers_for_every_charge_state(sb: Sandbox) -> None:
    now = int(time.time())
    for n, (name, (over, text, expected)) in enumerate(CHARGES.items()):
        charge_id, customer = f"ch_agree{n}", f"cus_agree{n}"
        spec = {
            "id": charge_id,
            "customer_id": customer,
            "customer_email": "alice@example.com",
            "amount": 2500,
            "currency": "usd",
            "amount_refunded": over.get("amount_refunded", 0),
            "created": now - over.get("created_days", 1) * DAY,
            "disputed": over.get("disputed", False),
        }
        charges = [spec]
        if over.get("twin"):
            charges.append({**spec, "id": f"ch_agree{n}twin", "created": now - 2 * DAY})
        post(sb, "charges", charges)
        ticket_id = 9100 + n
        body = text.format(id=charge_id)
        post(
            sb,
            "tickets",
            [{"id": ticket_id, "requester_id": 101, "subject": "Refund", "description": body}],
        )
        job = JobView(
            "job-agree", "support_refund", {"ticket_id": ticket_id}, "zendesk:101", 1, 0, 1
        )
        try:
            plan = plan_for(job)
        except EscalationRequired as exc:  # the thread's rules (verifiers/zendesk/thread.py)
            pytest.fail(f"{name}: {exc}")
        currency = "eur" if "EUR" in body else "usd"
        reason = "duplicate" if over.get("twin") else "requested_by_customer"
        args = {"charge_id": charge_id, "amount": 2500, "currency": currency, "reason": reason}
        assert agree(job, plan, ("stripe.refund", args)) == expected, name
        if expected == "planned":
            assert plan is not None and plan.steps[0].args["reason"] == reason, name


# --- Invoices: every seeded state (Open/Closed PO, tolerance, missing PO, vendor list,
# duplicates, already Paid/Approved) -------------------------------------------------------


def test_invoice_plans_agree_with_their_verifiers_for_every_seeded_invoice(sb: Sandbox) -> None:
    for label, record_id in seed.INVOICE_IDS.items():
        job = JobView(
            "job-agree",
            "invoice_exception",
            {"invoice_id": record_id, "sobject_type": "Invoice__c"},
            "unknown",
            1,
            0,
            1,
        )
        plan = plan_for(job)
        if plan is None:
            continue  # left to the model tiers
        invoice = next(i for i in seed.INVOICES if i.label == label)
        would_be = (
            "salesforce.approve_payment",
            {"invoice_id": record_id, "amount": f"{invoice.amount:.2f}"},
        )
        agree(job, plan, would_be)
