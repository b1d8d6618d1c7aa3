"""app/rules/invoices.py: the rules-tier plans for invoice exceptions, on hand-built contexts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.controls import policy
from app.jobs.steps import Plan
from app.rules.invoices import plan_invoice_exception
from app.stages.plan import validate_plan
from app.workflows import registry as rules

INVOICE_ID = "a01Dn00000HuWdiIAF"
OTHER_ID = "a01Dn00000ZpM88IAF"
PO_ID = "a02Dn00000lZn4RIAS"


@pytest.fixture(autouse=True)
def _repo_config(clean_env: Path) -> None:
    """The repository's config/: policy.yaml (vendor allowlist) and verifiers.yaml (tolerance)."""


def day(offset: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


def invoice(**fields: Any) -> dict[str, Any]:
    record = {
        "Id": INVOICE_ID,
        "Name": "INV-1001",
        "Vendor__c": "Acme Supplies",
        "Amount__c": 1200.0,
        "CurrencyIsoCode": "USD",
        "Purchase_Order__c": PO_ID,
        "Due_Date__c": day(20),
        "Status__c": "Exception",
        "Exception_Reason__c": "needs review",
        "Hold_Reason__c": None,
    }
    record.update(fields)
    return record


def order(**fields: Any) -> dict[str, Any]:
    record = {
        "Id": PO_ID,
        "Name": "PO-5001",
        "Vendor__c": "Acme Supplies",
        "Amount__c": 1200.0,
        "CurrencyIsoCode": "USD",
        "Status__c": "Open",
    }
    record.update(fields)
    return record


def context(
    inv: dict[str, Any] | None = None,
    po: dict[str, Any] | None = None,
    same_number: list[dict[str, Any]] | None = None,
    open_orders: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    inv = invoice() if inv is None else inv
    return {
        "input": {"invoice_id": inv["Id"], "sobject_type": "Invoice__c"},
        "requester": "salesforce:00Dxx0000001gPL/action:04k000000000001",
        "invoice": inv,
        "purchase_order": order() if po is None and inv.get("Purchase_Order__c") else po,
        "same_number": same_number or [],
        "vendor_open_orders": open_orders or [],
    }


def planned(ctx: dict[str, Any]) -> Plan:
    """The plan, which must be valid and allowed by the repository's policy."""
    plan = plan_invoice_exception(ctx)
    assert plan is not None
    assert plan.workflow == "invoice_exception" and plan.confidence == 0.95
    validate_plan(plan, "invoice_exception")
    for step in plan.steps:
        assert step.rationale and step.evidence
        assert policy.decide("invoice_exception", step.tool, step.args).outcome != "block"
    return plan


def hold_reason(plan: Plan) -> str:
    [step] = plan.steps
    assert step.tool == "salesforce.update_invoice"
    assert step.args["invoice_id"] == INVOICE_ID
    assert step.args["fields"]["Status__c"] == "On Hold"
    assert "policy:invoices#holds" in step.evidence
    assert plan.escalate is None
    reason: str = step.args["fields"]["Hold_Reason__c"]
    return reason


# --- nothing for the rules to do ---------------------------------------------------------------


def test_a_missing_invoice_is_left_to_the_model_tiers() -> None:
    ctx = context()
    ctx["invoice"] = None
    assert plan_invoice_exception(ctx) is None


@pytest.mark.parametrize("status", ["Paid", "Approved"])
def test_a_settled_invoice_is_handed_back_with_no_steps(status: str) -> None:
    plan = planned(context(invoice(Status__c=status)))
    assert plan.steps == []
    assert plan.escalate is not None
    assert plan.escalate.reason == f"invoice is already {status}: nothing to do"


@pytest.mark.parametrize("status", ["On Hold", "Rejected"])
def test_an_invoice_a_person_already_decided_on_is_left_alone(status: str) -> None:
    assert plan_invoice_exception(context(invoice(Status__c=status))) is None


@pytest.mark.parametrize("amount", [None, 0, -50.0, "not a number"])
def test_an_invoice_without_a_payable_amount_is_not_planned(amount: Any) -> None:
    assert plan_invoice_exception(context(invoice(Amount__c=amount))) is None


def test_a_purchase_order_reference_that_does_not_resolve_is_not_planned() -> None:
    ctx = context()
    ctx["purchase_order"] = None
    assert plan_invoice_exception(ctx) is None


# --- holds ---------------------------------------------------------------------------------


def test_a_vendor_off_the_allowlist_is_held() -> None:
    inv = invoice(Vendor__c="Umbrella Corp", Purchase_Order__c=None, Amount__c=450.0)
    plan = planned(context(inv))
    assert hold_reason(plan) == "Vendor Umbrella Corp is not on the approved vendor list"
    assert "policy:invoices#approved-vendors" in plan.steps[0].evidence
    assert "invoice:INV-1001" in plan.steps[0].evidence


@pytest.mark.parametrize("status", ["Paid", "Approved"])
def test_a_duplicate_of_a_settled_invoice_is_held(status: str) -> None:
    # Given another invoice with the same number that was already paid or approved
    other = invoice(Id=OTHER_ID, Status__c=status)
    # When the rules plan
    plan = planned(context(same_number=[other]))
    # Then the invoice is held, naming the other one
    assert hold_reason(plan) == f"Duplicate of invoice INV-1001 already {status} ({OTHER_ID})"
    assert f"invoice:{OTHER_ID}" in plan.steps[0].evidence
    assert "policy:invoices#duplicates" in plan.steps[0].evidence


def test_the_invoice_itself_in_the_same_number_list_is_no_duplicate() -> None:
    plan = planned(context(same_number=[invoice(Status__c="Approved")]))
    assert [s.tool for s in plan.steps] == ["salesforce.approve_payment"]


def test_an_unsettled_same_numbered_invoice_is_named_to_the_approver() -> None:
    plan = planned(context(same_number=[invoice(Id=OTHER_ID)]))
    [step] = plan.steps
    assert step.tool == "salesforce.approve_payment"
    assert f"{OTHER_ID} (Exception)" in step.rationale and "approve only one" in step.rationale
    assert f"invoice:{OTHER_ID}" in step.evidence


def test_a_rejected_same_numbered_invoice_is_not_mentioned() -> None:
    plan = planned(context(same_number=[invoice(Id=OTHER_ID, Status__c="Rejected")]))
    assert OTHER_ID not in plan.steps[0].rationale


def test_an_amount_beyond_the_tolerance_is_held_with_both_amounts() -> None:
    # PO 800.00: tolerance max(1.00, 0.5% = 4.00) = 4.00; 880.00 is 80.00 off
    inv = invoice(Name="INV-1002", Vendor__c="Globex Parts", Amount__c=880.0)
    po = order(Name="PO-5002", Vendor__c="Globex Parts", Amount__c=800.0)
    plan = planned(context(inv, po))
    assert hold_reason(plan) == (
        "Invoice amount 880.00 USD differs from purchase order PO-5002's 800.00 USD by 80.00, "
        "more than the 4.00 tolerance"
    )
    assert "po:PO-5002" in plan.steps[0].evidence
    assert "policy:invoices#matching" in plan.steps[0].evidence


@pytest.mark.parametrize(
    ("amount", "held"),
    [
        (1206.0, False),  # exactly the tolerance (0.5% of 1200 = 6.00)
        (1194.0, False),  # below the order by the tolerance
        (1206.01, True),
        (1193.99, True),
    ],
)
def test_the_tolerance_edge_is_exact_decimal_arithmetic(amount: float, held: bool) -> None:
    plan = planned(context(invoice(Amount__c=amount)))
    assert (plan.steps[0].tool == "salesforce.update_invoice") is held


def test_a_small_order_gets_the_absolute_tolerance() -> None:
    # 0.5% of 100.00 is 0.50: the absolute 1.00 applies
    po = order(Amount__c=100.0)
    assert planned(context(invoice(Amount__c=101.0), po)).steps[0].tool == (
        "salesforce.approve_payment"
    )
    held = planned(context(invoice(Amount__c=101.01), po))
    assert "more than the 1.00 tolerance" in hold_reason(held)


def test_a_tolerance_below_a_cent_boundary_is_shown_rounded_down() -> None:
    # 0.5% of 333.33 is 1.66665: 1.67 off is beyond it, and the reason must not read
    # "by 1.67, more than the 1.67 tolerance"
    po = order(Amount__c=333.33)
    held = planned(context(invoice(Amount__c=335.0), po))
    assert hold_reason(held).endswith("by 1.67, more than the 1.66 tolerance")
    approved = planned(context(invoice(Amount__c=334.99), po))
    assert "within the 1.66 tolerance" in approved.steps[0].rationale


def test_an_invoice_against_a_closed_order_is_held() -> None:
    po = order(Name="PO-5004", Amount__c=300.0, Status__c="Closed")
    plan = planned(context(invoice(Amount__c=300.0, Due_Date__c=day(-3)), po))
    assert hold_reason(plan) == "Purchase order PO-5004 is Closed, not Open"


def test_an_order_of_another_vendor_is_held() -> None:
    plan = planned(context(po=order(Vendor__c="Globex Parts")))
    assert hold_reason(plan) == (
        "Vendor Acme Supplies differs from purchase order PO-5001's vendor Globex Parts"
    )


def test_an_order_in_another_currency_is_held() -> None:
    plan = planned(context(po=order(CurrencyIsoCode="EUR")))
    assert "another currency" in hold_reason(plan)


def test_a_long_hold_reason_fits_the_field() -> None:
    vendor = "V" * 300
    inv = invoice(Vendor__c=vendor, Purchase_Order__c=None)
    assert len(hold_reason(planned(context(inv)))) == 255


# --- missing purchase order ----------------------------------------------------------------


INITECH_PO = "a02Dn00000ROnBaIAL"


def initech(**fields: Any) -> dict[str, Any]:
    base = {"Id": INITECH_PO, "Name": "PO-5003", "Vendor__c": "Initech Services"}
    return order(**{**base, "Amount__c": 5000.0, **fields})


def test_the_one_matching_open_order_is_linked_then_the_payment_approved() -> None:
    inv = invoice(Vendor__c="Initech Services", Amount__c=5000.0, Purchase_Order__c=None)
    others = [
        initech(Id="a02Dn00000AAAAAAAA", Name="PO-9001", Amount__c=7000.0),
        initech(Id="a02Dn00000BBBBBBBB", Name="PO-9002", Status__c="Closed"),
        initech(Id="a02Dn00000CCCCCCCC", Name="PO-9003", CurrencyIsoCode="EUR"),
        initech(Id="a02Dn00000DDDDDDDD", Name="PO-9004", Vendor__c="Globex Parts"),
    ]
    plan = planned(context(inv, open_orders=[*others, initech()]))
    link, approve = plan.steps
    assert link.tool == "salesforce.update_invoice"
    assert link.args == {"invoice_id": INVOICE_ID, "fields": {"Purchase_Order__c": INITECH_PO}}
    assert "po:PO-5003" in link.evidence
    assert approve.tool == "salesforce.approve_payment"
    assert approve.args == {"invoice_id": INVOICE_ID, "amount": "5000.00"}
    assert "PO-5003" in plan.summary and "5000.00 USD" in plan.summary


def test_no_matching_open_order_is_a_hold() -> None:
    inv = invoice(Vendor__c="Initech Services", Amount__c=5000.0, Purchase_Order__c=None)
    plan = planned(context(inv, open_orders=[initech(Amount__c=7000.0)]))
    assert hold_reason(plan) == (
        "No purchase order on the invoice, and no open order of Initech Services matches it "
        "for 5000.00 USD"
    )
    assert "policy:invoices#missing-purchase-orders" in plan.steps[0].evidence


def test_several_matching_open_orders_are_a_hold_naming_them() -> None:
    inv = invoice(Vendor__c="Initech Services", Amount__c=5000.0, Purchase_Order__c=None)
    twin = initech(Id="a02Dn00000EEEEEEEE", Name="PO-5099", Amount__c=5001.0)
    reason = hold_reason(planned(context(inv, open_orders=[initech(), twin])))
    assert reason.startswith("No purchase order")
    assert "2 open orders of Initech Services match it (PO-5003, PO-5099)" in reason


# --- approval ------------------------------------------------------------------------------


def test_a_matching_invoice_is_approved_for_its_own_amount() -> None:
    plan = planned(context(invoice(Amount__c=1199.5)))
    [step] = plan.steps
    assert step.tool == "salesforce.approve_payment"
    assert step.args == {"invoice_id": INVOICE_ID, "amount": "1199.50"}
    assert step.evidence[:2] == ["invoice:INV-1001", "po:PO-5001"]
    assert "policy:invoices#approval" in step.evidence
    assert "has passed" not in step.rationale


def test_a_past_due_date_is_mentioned_in_the_rationale() -> None:
    due = day(-3)
    [step] = planned(context(invoice(Due_Date__c=due))).steps
    assert step.tool == "salesforce.approve_payment"
    assert f"The due date {due} has passed" in step.rationale


def test_the_jobs_own_invoice_id_is_the_one_acted_on() -> None:
    ctx = context()
    ctx["input"]["invoice_id"] = INVOICE_ID[:15]
    assert planned(ctx).steps[0].args["invoice_id"] == INVOICE_ID[:15]


def test_the_dispatcher_plans_invoice_exceptions() -> None:
    plan = rules.plan("invoice_exception", context())
    assert plan is not None and plan.steps[0].tool == "salesforce.approve_payment"
