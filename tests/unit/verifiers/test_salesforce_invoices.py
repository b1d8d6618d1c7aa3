"""verifiers/salesforce/invoices.py: each invoice rule on hand-built facts, then the chains on the
sandbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.controls.calls import CallRecorder
from tests.support.sandbox import Sandbox
from tools.salesforce import client as salesforce_api
from tools.sandbox import seed
from verifiers.base import Facts, Verdict, run_chain
from verifiers.chains import CHAINS
from verifiers.salesforce import invoices

INV, PO = seed.INVOICE_IDS, seed.PURCHASE_ORDER_IDS
INV_1001 = INV["INV-1001"]

# The repository's config/ (vendor allowlist in policy.yaml, tolerance in verifiers.yaml).
pytestmark = pytest.mark.usefixtures("clean_env")


def invoice(**overrides: Any) -> dict[str, Any]:
    """An Invoice__c as Salesforce renders it (the fields the rules read)."""
    base: dict[str, Any] = {
        "Id": INV_1001,
        "Name": "INV-1001",
        "CurrencyIsoCode": "USD",
        "Vendor__c": "Acme Supplies",
        "Amount__c": 1200.0,
        "Purchase_Order__c": PO["PO-5001"],
        "Status__c": "Exception",
    }
    base.update(overrides)
    return base


def purchase_order(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Id": PO["PO-5001"],
        "Name": "PO-5001",
        "CurrencyIsoCode": "USD",
        "Vendor__c": "Acme Supplies",
        "Amount__c": 1200.0,
        "Status__c": "Open",
    }
    base.update(overrides)
    return base


def approve(
    *,
    amount: str = "1200.00",
    target: str = INV_1001,
    job_invoice: Any = INV_1001,
    inv: Any = "default",
    po: Any = "default",
    same_number: list[dict[str, Any]] | None = None,
) -> Facts:
    return Facts(
        tool="salesforce.approve_payment",
        args={"invoice_id": target, "amount": amount},
        job_input={"invoice_id": job_invoice},
        data={
            "invoice": invoice() if inv == "default" else inv,
            "purchase_order": purchase_order() if po == "default" else po,
            "same_number": same_number or [],
        },
        workflow="invoice_exception",
    )


def update(fields: dict[str, Any], *, inv: Any = "default", po: Any = "default") -> Facts:
    return Facts(
        tool="salesforce.update_invoice",
        args={"invoice_id": INV_1001, "fields": fields},
        job_input={"invoice_id": INV_1001},
        data={
            "invoice": invoice() if inv == "default" else inv,
            "purchase_order": purchase_order() if po == "default" else po,
        },
        workflow="invoice_exception",
    )


# --- approve_payment rules ------------------------------------------------------------------


def test_a_sound_approval_passes_every_rule_in_order() -> None:
    failure, verdicts = run_chain(invoices.APPROVE_RULES, approve())

    assert failure is None
    assert [v.rule for v in verdicts] == [
        "invoice_is_the_jobs",
        "invoice_exists",
        "invoice_transition_valid",
        "amount_matches_invoice",
        "vendor_allowlisted",
        "purchase_order_matches",
        "invoice_number_unpaid",
    ]


@pytest.mark.parametrize(
    ("job_invoice", "ok"),
    [(INV_1001, True), (INV_1001[:15], True), (INV["INV-1004"], False), (None, False)],
)
def test_invoice_must_be_the_jobs_15_or_18_characters(job_invoice: Any, ok: bool) -> None:
    verdict = invoices.InvoiceIsTheJobs().check(approve(job_invoice=job_invoice))

    assert verdict.ok is ok
    if not ok:
        assert verdict.evidence == {"expected": job_invoice, "asked": INV_1001}


def test_missing_invoice_fails_and_stops_the_chain() -> None:
    failure, verdicts = run_chain(invoices.APPROVE_RULES, approve(inv=None))

    assert failure is not None and failure.rule == "invoice_exists"
    assert failure.evidence == {"invoice_id": INV_1001}
    assert len(verdicts) == 2


@pytest.mark.parametrize("status", ["Approved", "Paid"])
def test_settled_invoice_is_never_changed(status: str) -> None:
    verdict = invoices.InvoiceTransitionValid().check(approve(inv=invoice(Status__c=status)))

    assert not verdict.ok and verdict.evidence == {"status": status}


@pytest.mark.parametrize("status", ["New", "Exception", "On Hold"])
def test_open_invoice_may_be_approved(status: str) -> None:
    assert invoices.InvoiceTransitionValid().check(approve(inv=invoice(Status__c=status))).ok


@pytest.mark.parametrize(
    ("amount", "ok"), [("1200.00", True), ("1200", True), ("1199.99", False), ("1200.01", False)]
)
def test_amount_must_be_the_invoices_exactly(amount: str, ok: bool) -> None:
    verdict = invoices.AmountMatchesInvoice().check(approve(amount=amount))

    assert verdict.ok is ok
    if not ok:
        assert verdict.evidence == {"amount": amount, "invoice_amount": "1200.0"}


def test_vendor_off_the_allowlist_fails() -> None:
    verdict = invoices.VendorAllowlisted().check(approve(inv=invoice(Vendor__c="Umbrella Corp")))

    assert not verdict.ok
    assert verdict.evidence["vendor"] == "Umbrella Corp"
    assert "Acme Supplies" in verdict.evidence["allowlist"]


@pytest.mark.parametrize(
    ("inv", "po", "detail"),
    [
        (invoice(Purchase_Order__c=None), None, "has no purchase order"),
        (invoice(), None, "does not exist"),
        (invoice(), purchase_order(Status__c="Closed"), "is Closed, not Open"),
        (invoice(), purchase_order(Vendor__c="Globex Parts"), "another vendor's"),
        (invoice(), purchase_order(CurrencyIsoCode="EUR"), "another currency"),
        (invoice(Amount__c=880.0), purchase_order(Amount__c=800.0), "by more than"),
    ],
)
def test_purchase_order_must_back_the_invoice(inv: Any, po: Any, detail: str) -> None:
    verdict = invoices.PurchaseOrderMatches().check(approve(inv=inv, po=po))

    assert not verdict.ok and detail in verdict.detail


def test_amount_off_the_order_fails_with_the_tolerance() -> None:
    # 0.5% of 800.00 is 4.00, more than the absolute 1.00: 880.00 is 80.00 off.
    f = approve(inv=invoice(Amount__c=880.0), po=purchase_order(Amount__c=800.0))

    verdict = invoices.PurchaseOrderMatches().check(f)

    assert not verdict.ok
    ev = verdict.evidence
    assert (ev["invoice_amount"], ev["po_amount"]) == ("880.0", "800.0")
    assert Decimal(ev["difference"]) == 80 and Decimal(ev["tolerance"]) == 4


@pytest.mark.parametrize(("amount", "ok"), [(1203.99, True), (1206.0, True), (1206.01, False)])
def test_amount_within_tolerance_of_the_order_passes(amount: float, ok: bool) -> None:
    # 0.5% of 1200.00 is 6.00.
    verdict = invoices.PurchaseOrderMatches().check(approve(inv=invoice(Amount__c=amount)))

    assert verdict.ok is ok


def test_invoice_number_paid_on_another_record_fails_naming_it() -> None:
    other = {"Id": INV["INV-1004"], "Name": "INV-1001", "Status__c": "Paid"}

    verdict = invoices.InvoiceNumberUnpaid().check(approve(same_number=[other]))

    assert not verdict.ok
    assert verdict.evidence == {
        "invoice_number": "INV-1001",
        "other_invoice_id": INV["INV-1004"],
        "other_status": "Paid",
    }


def test_an_unpaid_duplicate_number_does_not_fail_the_rule() -> None:
    other = {"Id": INV["INV-1004"], "Name": "INV-1001", "Status__c": "Exception"}

    verdict = invoices.InvoiceNumberUnpaid().check(approve(same_number=[other]))

    assert verdict.ok and verdict.evidence["same_number"] == [INV["INV-1004"]]


# --- update_invoice rules -------------------------------------------------------------------


def test_a_hold_passes_every_update_rule() -> None:
    failure, verdicts = run_chain(
        invoices.UPDATE_RULES, update({"Status__c": "On Hold", "Hold_Reason__c": "dispute"})
    )

    assert failure is None
    assert [v.rule for v in verdicts] == [
        "invoice_is_the_jobs",
        "invoice_exists",
        "invoice_transition_valid",
        "new_purchase_order_matches",
    ]


def test_paid_invoice_is_not_updated() -> None:
    f = update({"Hold_Reason__c": "x"}, inv=invoice(Status__c="Paid"))

    failure, _ = run_chain(invoices.UPDATE_RULES, f)

    assert failure is not None and failure.rule == "invoice_transition_valid"


def test_update_may_not_settle_an_invoice() -> None:
    verdict = invoices.InvoiceTransitionValid().check(update({"Status__c": "Approved"}))

    assert not verdict.ok and verdict.evidence == {"status": "Exception", "wanted": "Approved"}


def test_linking_a_closed_order_fails() -> None:
    f = update({"Purchase_Order__c": PO["PO-5004"]}, po=purchase_order(Status__c="Closed"))

    verdict = invoices.NewPurchaseOrderMatches().check(f)

    assert not verdict.ok
    assert verdict.evidence["purchase_order_id"] == PO["PO-5004"]
    assert verdict.evidence["po_status"] == "Closed"


def test_linked_order_is_judged_against_the_invoice_after_the_update() -> None:
    # The invoice says 880.00, the update corrects it to the order's 1200.00 as well.
    f = update({"Purchase_Order__c": PO["PO-5001"], "Amount__c": 1200}, inv=invoice(Amount__c=880))

    assert invoices.NewPurchaseOrderMatches().check(f).ok


def test_clearing_the_purchase_order_fails() -> None:
    verdict = invoices.NewPurchaseOrderMatches().check(update({"Purchase_Order__c": ""}, po=None))

    assert not verdict.ok and verdict.evidence == {"purchase_order_id": None}


# --- against the sandbox --------------------------------------------------------------------


@pytest.fixture
def rec(pg_env: dict[str, str], sandbox: Sandbox) -> CallRecorder:
    """A recorder against a fresh sandbox, with real PostgreSQL and Redis behind the gates."""
    return CallRecorder(stage="verify_proposal", workflow="invoice_exception")


def verify(rec: CallRecorder, tool: str, args: dict[str, Any], job_invoice: str) -> Facts:
    facts = Facts(tool, args, {"invoice_id": job_invoice}, workflow="invoice_exception")
    CHAINS[tool].gather(rec, facts)
    return facts


def approval(rec: CallRecorder, label: str, amount: str) -> tuple[Verdict | None, list[Verdict]]:
    args = {"invoice_id": INV[label], "amount": amount}
    return run_chain(
        invoices.APPROVE_RULES, verify(rec, "salesforce.approve_payment", args, INV[label])
    )


def read_back(rec: CallRecorder, tool: str, args: dict[str, Any]) -> Verdict:
    return CHAINS[tool].read_back(rec, args, {}, "step-key")


def test_inv_1001_approval_passes_then_reads_back(rec: CallRecorder) -> None:
    args = {"invoice_id": INV_1001, "amount": "1200.00"}
    failure, verdicts = approval(rec, "INV-1001", "1200.00")
    assert failure is None and len(verdicts) == 7
    # Every read was recorded (the order, the same-number query): the audit shows the facts.
    assert {c.tool for c in rec.calls} == {
        "salesforce.get_invoice",
        "salesforce.get_purchase_order",
        "salesforce.query",
    }
    # Before the write the read-back sees no approval
    before = read_back(rec, "salesforce.approve_payment", args)
    assert not before.ok and before.rule == "invoice_approved"
    assert before.evidence["status"] == "Exception"

    rec.tool("salesforce.approve_payment", args, key="approve-inv-1001")

    after = read_back(rec, "salesforce.approve_payment", args)
    assert after.ok and after.evidence["status"] == "Approved"


def test_read_back_sees_a_changed_amount(rec: CallRecorder) -> None:
    salesforce_api.update_record("Invoice__c", INV_1001, {"Status__c": "Approved"})
    salesforce_api.update_record("Invoice__c", INV_1001, {"Amount__c": 1300})

    verdict = read_back(
        rec, "salesforce.approve_payment", {"invoice_id": INV_1001, "amount": "1200.00"}
    )

    assert not verdict.ok and verdict.rule == "invoice_amount_unchanged"
    assert verdict.evidence["invoice_amount"] == "1300.0"


def test_duplicate_number_fails_once_the_first_is_approved(rec: CallRecorder) -> None:
    # INV-1004's record carries the number INV-1001: fine while INV-1001 is unpaid
    assert approval(rec, "INV-1004", "1200.00")[0] is None
    rec.tool("salesforce.approve_payment", {"invoice_id": INV_1001, "amount": "1200.00"}, "k1")

    failure, _ = approval(rec, "INV-1004", "1200.00")

    assert failure is not None and failure.rule == "invoice_number_unpaid"
    assert failure.evidence == {
        "invoice_number": "INV-1001",
        "other_invoice_id": INV_1001,
        "other_status": "Approved",
    }


def test_duplicate_number_fails_when_the_first_is_paid(rec: CallRecorder) -> None:
    salesforce_api.update_record("Invoice__c", INV_1001, {"Status__c": "Paid"})

    failure, _ = approval(rec, "INV-1004", "1200.00")

    assert failure is not None and failure.rule == "invoice_number_unpaid"
    assert failure.evidence["other_status"] == "Paid"


@pytest.mark.parametrize(
    ("label", "amount", "rule", "evidence"),
    [
        ("INV-1005", "450.00", "vendor_allowlisted", {"vendor": "Umbrella Corp"}),
        ("INV-1002", "880.00", "purchase_order_matches", {"po_amount": "800.0"}),
        ("INV-1003", "5000.00", "purchase_order_matches", {"purchase_order_id": None}),
        ("INV-1006", "300.00", "purchase_order_matches", {"po_status": "Closed"}),
        ("INV-1007", "800.00", "invoice_transition_valid", {"status": "Paid"}),
        ("INV-1001", "1000.00", "amount_matches_invoice", {"invoice_amount": "1200.0"}),
    ],
)
def test_seeded_exceptions_fail_their_rule(
    rec: CallRecorder, label: str, amount: str, rule: str, evidence: dict[str, Any]
) -> None:
    failure, _ = approval(rec, label, amount)

    assert failure is not None and failure.rule == rule
    assert evidence.items() <= failure.evidence.items()


def test_unknown_invoice_fails_the_rule_not_the_call(rec: CallRecorder) -> None:
    missing = "a01Dn00000Zzzzz"  # well-formed, in no record
    facts = verify(
        rec, "salesforce.approve_payment", {"invoice_id": missing, "amount": "1.00"}, missing
    )

    failure, _ = run_chain(invoices.APPROVE_RULES, facts)

    assert failure is not None and failure.rule == "invoice_exists"
    assert rec.calls[-1].outcome == "error"  # the 404 is still in the record of calls


def test_linking_the_missing_order_passes_and_reads_back(rec: CallRecorder) -> None:
    # INV-1003 (Initech, 5000.00) has no order; PO-5003 is Initech's open order for 5000.00
    args = {"invoice_id": INV["INV-1003"], "fields": {"Purchase_Order__c": PO["PO-5003"][:15]}}
    facts = verify(rec, "salesforce.update_invoice", args, INV["INV-1003"])
    assert run_chain(invoices.UPDATE_RULES, facts)[0] is None
    assert not read_back(rec, "salesforce.update_invoice", args).ok

    rec.tool("salesforce.update_invoice", args, key="link-po")

    # The 15-character id reads back as its 18-character form
    verdict = read_back(rec, "salesforce.update_invoice", args)
    assert verdict.ok and verdict.rule == "invoice_update_confirmed"


@pytest.mark.parametrize(
    ("po_id", "detail"),
    [
        (PO["PO-5001"], "another vendor's"),
        (PO["PO-5004"], "not Open"),
        ("a02Dn00000Zzzzz", "does not exist"),
        ("PO-5003", "does not exist"),  # a name, not an id: never read
    ],
)
def test_linking_a_wrong_order_fails(rec: CallRecorder, po_id: str, detail: str) -> None:
    args = {"invoice_id": INV["INV-1003"], "fields": {"Purchase_Order__c": po_id}}

    failure, _ = run_chain(
        invoices.UPDATE_RULES, verify(rec, "salesforce.update_invoice", args, INV["INV-1003"])
    )

    assert failure is not None and failure.rule == "new_purchase_order_matches"
    assert detail in failure.detail


def test_hold_read_back_names_the_field_that_differs(rec: CallRecorder) -> None:
    args = {"invoice_id": INV_1001, "fields": {"Status__c": "On Hold", "Hold_Reason__c": "dup?"}}
    rec.tool("salesforce.update_invoice", args, key="hold")
    salesforce_api.update_record("Invoice__c", INV_1001, {"Hold_Reason__c": "other"})

    verdict = read_back(rec, "salesforce.update_invoice", args)

    assert not verdict.ok and verdict.rule == "invoice_fields_match"
    assert verdict.evidence["differ"] == {"Hold_Reason__c": {"wanted": "dup?", "found": "other"}}
