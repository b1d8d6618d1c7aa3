"""gather_context against a real `opsgate sandbox` over HTTP, and the rules plans it leads to.

Reads go through a CallRecorder as in the plan stage (real Redis for the kill switch, rate
limits and breakers), so each one is also checked to be recorded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.controls.calls import CallRecorder
from app.core.redaction import Placeholders
from app.errors import EscalationRequired
from app.llm.planner import untrusted_block
from app.stages.plan import PlanStage, gather_context
from app.stages.runner import JobView
from app.workflows import registry as rules
from tests.support.sandbox import Sandbox
from tools.catalog import get_tool
from tools.sandbox import seed

pytestmark = pytest.mark.integration

INV = seed.INVOICE_IDS
PO = seed.PURCHASE_ORDER_IDS
OKTA = {u.login.split("@")[0]: u.id for u in seed.OKTA_USERS}
GROUP = {g.name: g.id for g in seed.OKTA_GROUPS}
UNKNOWN_INVOICE = "a01Dn00000ZZZZZZZZ"


@pytest.fixture
def sb(pg_env: dict[str, str], sandbox: Sandbox) -> Sandbox:
    """A fresh sandbox, with real Redis behind the recorder's kill switch and rate limits."""
    return sandbox


def view(workflow: str, job_input: dict[str, Any], requester: str = "unknown") -> JobView:
    return JobView("job-ctx", workflow, job_input, requester, 1, 0, 1)


def invoice_job(label_or_id: str) -> JobView:
    record_id = INV.get(label_or_id, label_or_id)
    return view("invoice_exception", {"invoice_id": record_id, "sobject_type": "Invoice__c"})


def it_job(requester: str, request_type: str, target: str, **fields: Any) -> JobView:
    job_input = {"request_type": request_type, "target_login": target, **fields}
    return view("it_request", job_input, requester)


def gather(job: JobView) -> tuple[dict[str, Any], CallRecorder]:
    rec = CallRecorder(stage="plan", workflow=job.workflow)
    return gather_context(job, rec), rec


def calls(rec: CallRecorder) -> list[tuple[str, str]]:
    return [(c.tool, c.outcome) for c in rec.calls]


# --- invoice_exception ---------------------------------------------------------------------


def test_an_invoice_context_holds_the_record_its_order_and_its_neighbours(sb: Sandbox) -> None:
    # When the context of INV-1001 is read (INV-1004 carries the same number)
    context, rec = gather(invoice_job("INV-1001"))
    # Then it has the invoice, its purchase order, the other INV-1001 and Acme's open orders
    assert context["input"]["invoice_id"] == INV["INV-1001"]
    assert context["requester"] == "unknown"
    invoice = context["invoice"]
    assert (invoice["Id"], invoice["Name"], invoice["Amount__c"]) == (
        INV["INV-1001"],
        "INV-1001",
        1200.0,
    )
    assert context["purchase_order"]["Id"] == PO["PO-5001"]
    assert context["purchase_order"]["Status__c"] == "Open"
    assert [r["Id"] for r in context["same_number"]] == [INV["INV-1004"]]
    # PO-5004 is Acme's too, but Closed
    assert [r["Id"] for r in context["vendor_open_orders"]] == [PO["PO-5001"]]
    assert calls(rec) == [
        ("salesforce.get_invoice", "ok"),
        ("salesforce.get_purchase_order", "ok"),
        ("salesforce.query", "ok"),
        ("salesforce.query", "ok"),
    ]


def test_an_invoice_without_an_order_has_none(sb: Sandbox) -> None:
    context, _ = gather(invoice_job("INV-1003"))
    assert context["purchase_order"] is None
    assert context["same_number"] == []
    assert [r["Name"] for r in context["vendor_open_orders"]] == ["PO-5003"]


def test_an_unknown_invoice_is_none_not_an_error(sb: Sandbox) -> None:
    context, rec = gather(invoice_job(UNKNOWN_INVOICE))
    assert context["invoice"] is None
    assert context["purchase_order"] is None
    assert context["same_number"] == context["vendor_open_orders"] == []
    # The 404 is still on the record, as a failed read
    assert calls(rec) == [("salesforce.get_invoice", "error")]
    assert "404" in rec.calls[0].response["error"]  # type: ignore[index]
    assert rules.plan("invoice_exception", context) is None


def test_the_seeded_invoices_get_the_plans_the_policy_asks_for(sb: Sandbox) -> None:
    outcomes: dict[str, Any] = {}
    for label in INV:
        context, _ = gather(invoice_job(label))
        plan = rules.plan("invoice_exception", context)
        assert plan is not None, label
        outcomes[label] = (
            plan.escalate.reason
            if plan.escalate
            else [(s.tool, s.args.get("fields") or s.args.get("amount")) for s in plan.steps]
        )
    hold = "salesforce.update_invoice"
    approve = "salesforce.approve_payment"
    assert outcomes == {
        "INV-1001": [(approve, "1200.00")],
        "INV-1002": [
            (
                hold,
                {
                    "Status__c": "On Hold",
                    "Hold_Reason__c": "Invoice amount 880.00 USD differs from purchase order "
                    "PO-5002's 800.00 USD by 80.00, more than the 4.00 tolerance",
                },
            )
        ],
        "INV-1003": [(hold, {"Purchase_Order__c": PO["PO-5003"]}), (approve, "5000.00")],
        # INV-1001 is not settled yet: approvable, with the twin named to the approver
        "INV-1004": [(approve, "1200.00")],
        "INV-1005": [
            (
                hold,
                {
                    "Status__c": "On Hold",
                    "Hold_Reason__c": "Vendor Umbrella Corp is not on the approved vendor list",
                },
            )
        ],
        "INV-1006": [
            (
                hold,
                {
                    "Status__c": "On Hold",
                    "Hold_Reason__c": "Purchase order PO-5004 is Closed, not Open",
                },
            )
        ],
        "INV-1007": "invoice is already Paid: nothing to do",
    }


def test_once_one_of_two_same_numbered_invoices_is_approved_the_other_is_held(
    sb: Sandbox,
) -> None:
    # Given INV-1001 approved for payment
    spec = get_tool("salesforce.approve_payment")
    spec.invoke(spec.parse_args({"invoice_id": INV["INV-1001"], "amount": "1200.00"}), "k1")
    # When the record named INV-1001 too (seed label INV-1004) is planned
    context, _ = gather(invoice_job("INV-1004"))
    plan = rules.plan("invoice_exception", context)
    # Then it is held as a duplicate of the approved one
    assert plan is not None
    [step] = plan.steps
    assert step.args["fields"]["Hold_Reason__c"] == (
        f"Duplicate of invoice INV-1001 already Approved ({INV['INV-1001']})"
    )


def test_the_plan_stage_plans_invoices_with_the_rules_tier(sb: Sandbox) -> None:
    stage = PlanStage()
    plan, tier = stage.work(invoice_job("INV-1003"), [], CallRecorder("plan", "invoice_exception"))
    assert tier == "rules" and len(plan.steps) == 2
    with pytest.raises(EscalationRequired) as raised:
        stage.work(invoice_job("INV-1007"), [], CallRecorder("plan", "invoice_exception"))
    assert raised.value.reason == "planner_requested"
    assert "already Paid" in raised.value.detail


# --- it_request ----------------------------------------------------------------------------


def test_an_it_request_context_holds_both_users_and_the_targets_groups(sb: Sandbox) -> None:
    job = it_job("bob@example.com", "group_access", "alice@example.com", group_id=GROUP["Finance"])
    context, rec = gather(job)
    assert context["input"] == job.input and context["requester"] == "bob@example.com"
    assert context["target"]["id"] == OKTA["alice"]
    assert context["requester_user"]["id"] == OKTA["bob"]
    assert {g["id"] for g in context["target_groups"]} == {GROUP["Engineering"], GROUP["VPN Users"]}
    assert calls(rec) == [
        ("okta.get_user", "ok"),
        ("okta.list_user_groups", "ok"),
        ("okta.get_user", "ok"),
    ]
    plan = rules.plan("it_request", context)
    assert plan is not None
    assert [(s.tool, s.args) for s in plan.steps] == [
        ("okta.add_to_group", {"user_id": OKTA["alice"], "group_id": GROUP["Finance"]})
    ]


def test_asking_for_oneself_reads_the_user_once(sb: Sandbox) -> None:
    context, rec = gather(it_job("Dave@corp.example", "password_reset", "dave@corp.example"))
    assert context["requester_user"] == context["target"]
    assert [c.tool for c in rec.calls] == ["okta.get_user", "okta.list_user_groups"]
    plan = rules.plan("it_request", context)
    assert plan is not None and plan.steps[0].args == {"user_id": OKTA["dave"]}


def test_unknown_users_are_none_not_errors(sb: Sandbox) -> None:
    job = it_job("servicedesk-bot", "password_reset", "mallory@example.com")
    context, rec = gather(job)
    assert context["target"] is None and context["requester_user"] is None
    assert context["target_groups"] == []
    assert calls(rec) == [("okta.get_user", "error"), ("okta.get_user", "error")]
    assert rules.plan("it_request", context) is None


def test_a_requester_that_cannot_be_a_login_is_not_looked_up(sb: Sandbox) -> None:
    context, rec = gather(it_job("it", "offboarding", "erin@corp.example"))
    assert context["requester_user"] is None
    assert [c.tool for c in rec.calls] == ["okta.get_user", "okta.list_user_groups"]


def test_the_seeded_users_get_the_plans_the_policy_asks_for(sb: Sandbox) -> None:
    cases = {
        "member already": it_job(
            "alice@example.com", "group_access", "alice@example.com", group_id=GROUP["VPN Users"]
        ),
        "admins": it_job(
            "alice@example.com", "group_access", "bob@example.com", group_id=GROUP["Okta Admins"]
        ),
        "suspended reset": it_job("carol@example.com", "password_reset", "carol@example.com"),
        "suspended offboarding": it_job("bob@example.com", "offboarding", "carol@example.com"),
        "offboarding": it_job("bob@example.com", "offboarding", "erin@corp.example"),
    }
    got = {}
    for name, job in cases.items():
        plan = rules.plan("it_request", gather(job)[0])
        assert plan is not None, name
        got[name] = plan.escalate.reason if plan.escalate else [s.tool for s in plan.steps]
    assert got == {
        "member already": "already a member: nothing to do",
        "admins": ["okta.add_to_group"],
        "suspended reset": "the account is SUSPENDED, not active",
        "suspended offboarding": "already suspended: nothing to do",
        "offboarding": ["okta.suspend_user"],
    }


# --- what the model tiers would see ---------------------------------------------------------


@pytest.mark.parametrize(
    "job",
    [
        invoice_job("INV-1001"),
        invoice_job(UNKNOWN_INVOICE),
        it_job(
            "bob@example.com", "group_access", "alice@example.com", group_id="00gNOSUCHGROUP0000"
        ),
        it_job("unknown", "offboarding", "mallory@example.com"),
    ],
    ids=["invoice", "no-invoice", "it", "no-users"],
)
def test_the_context_is_what_the_model_planner_can_take(sb: Sandbox, job: JobView) -> None:
    # PlanStage hands {"input": job.input, **context} to the model tiers as untrusted data
    context, _ = gather(job)
    untrusted = {"input": job.input, **context}
    assert untrusted["input"] == job.input
    block = untrusted_block(untrusted, Placeholders())
    body = block.removeprefix("<untrusted_input>\n").removesuffix("\n</untrusted_input>")
    json.loads(body)
    assert "@example.com" not in block  # logins reach the model as placeholders
