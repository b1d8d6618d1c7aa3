"""Rules for Salesforce invoice writes, checked against the records, not the agent's summary."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from app.controls import policy
from app.errors import NotFound
from tools.salesforce import client as salesforce_api
from tools.salesforce.actions import INVOICE, same_salesforce_value
from verifiers import config
from verifiers.base import Facts, Reader, Rule, Verdict

PURCHASE_ORDER = "Purchase_Order__c"
# An invoice in one of these states has left accounts payable's hands: nothing changes it.
SETTLED = ("Approved", "Paid")
_SF_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


def _or_none(read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The record, or None when Salesforce says it does not exist (a rule then fails on it)."""
    try:
        return read()
    except NotFound:
        return None


def _invoice(rec: Reader, invoice_id: str) -> dict[str, Any] | None:
    return _or_none(
        lambda: rec.tool("salesforce.get_invoice", {"invoice_id": invoice_id})["invoice"]
    )


def _purchase_order(rec: Reader, po_id: Any) -> dict[str, Any] | None:
    # The id comes from the agent or the record: anything not shaped like an id is never put
    # in a URL path (it could address another object), it simply does not exist.
    if not isinstance(po_id, str) or not _SF_ID.fullmatch(po_id):
        return None
    return _or_none(
        lambda: rec.read(
            "salesforce.get_purchase_order",
            {"purchase_order_id": po_id},
            lambda: salesforce_api.get_record(PURCHASE_ORDER, po_id),
        )
    )


def _soql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _same_number(rec: Reader, invoice: dict[str, Any]) -> list[dict[str, Any]]:
    """Other invoice records carrying this invoice's number (Name)."""
    soql = f"SELECT Id, Name, Status__c FROM {INVOICE} WHERE Name = {_soql_string(invoice['Name'])}"
    records = rec.read(
        "salesforce.query",
        {"soql": soql},
        lambda: salesforce_api.query(soql),
    )
    return [r for r in records if str(r.get("Id"))[:15] != str(invoice["Id"])[:15]]


def gather_update(rec: Reader, facts: Facts) -> None:
    """Read the invoice, and the purchase order the update would link it to."""
    facts.data["invoice"] = _invoice(rec, facts.args["invoice_id"])
    if PURCHASE_ORDER in facts.args["fields"]:
        facts.data["purchase_order"] = _purchase_order(rec, facts.args["fields"][PURCHASE_ORDER])


def _after_earlier_updates(invoice: dict[str, Any], facts: Facts) -> dict[str, Any]:
    """The invoice as it will read once the plan's earlier updates of it ran (a plan that
    links the missing purchase order, then approves)."""
    for step in facts.earlier:
        args = step.args
        if step.tool == "salesforce.update_invoice" and (
            str(args.get("invoice_id"))[:15] == str(invoice.get("Id"))[:15]
        ):
            invoice = {**invoice, **args["fields"]}
    return invoice


def gather_approve(rec: Reader, facts: Facts) -> None:
    """Read the invoice (as the plan's earlier steps will leave it), its purchase order, and
    other invoices with the same number."""
    invoice = _invoice(rec, facts.args["invoice_id"])
    if invoice is not None:
        invoice = _after_earlier_updates(invoice, facts)
    facts.data["invoice"] = invoice
    if invoice is None:
        return
    facts.data["purchase_order"] = _purchase_order(rec, invoice.get(PURCHASE_ORDER))
    facts.data["same_number"] = _same_number(rec, invoice)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def _invoice_of(facts: Facts) -> dict[str, Any]:
    invoice = facts.data["invoice"]
    assert invoice is not None, "InvoiceExists runs before every rule that reads the invoice"
    return invoice


class InvoiceIsTheJobs(Rule):
    """The write goes to the invoice this job is about (15- and 18-character ids alike)."""

    name = "invoice_is_the_jobs"

    def check(self, facts: Facts) -> Verdict:
        expected, asked = facts.job_input.get("invoice_id"), facts.args["invoice_id"]
        # The first 15 characters are the id; the last 3 of an 18-character id only encode case.
        if not isinstance(expected, str) or expected[:15] != asked[:15]:
            return self.failed(
                f"the write targets invoice {asked}, the job is about {expected}",
                expected=expected,
                asked=asked,
            )
        return self.passed("invoice matches the job", invoice_id=asked)


class InvoiceExists(Rule):
    """The invoice exists in Salesforce."""

    name = "invoice_exists"

    def check(self, facts: Facts) -> Verdict:
        invoice_id = facts.args["invoice_id"]
        if facts.data.get("invoice") is None:
            return self.failed(
                f"invoice {invoice_id} does not exist in Salesforce", invoice_id=invoice_id
            )
        return self.passed("invoice found", invoice_id=invoice_id)


class InvoiceTransitionValid(Rule):
    """An approved or paid invoice is never changed, and no update settles one."""

    name = "invoice_transition_valid"

    def check(self, facts: Facts) -> Verdict:
        status = _invoice_of(facts).get("Status__c")
        if status in SETTLED:
            return self.failed(f"the invoice is already {status}", status=status)
        wanted = (facts.args.get("fields") or {}).get("Status__c")
        # Approval has its own tool, its own rules and a human's approval; paying is not ours.
        if wanted in SETTLED:
            return self.failed(
                f"an update may not set the status {wanted}", status=status, wanted=wanted
            )
        return self.passed("the invoice may change", status=status, wanted=wanted)


class AmountMatchesInvoice(Rule):
    """The amount to approve is exactly the invoice's amount."""

    name = "amount_matches_invoice"

    def check(self, facts: Facts) -> Verdict:
        asked = _decimal(facts.args.get("amount"))
        actual = _decimal(_invoice_of(facts).get("Amount__c"))
        if asked is None or actual is None or asked != actual:
            return self.failed(
                f"approving {facts.args.get('amount')}, the invoice is for {actual}",
                amount=str(facts.args.get("amount")),
                invoice_amount=str(actual),
            )
        return self.passed("amount is the invoice's", amount=str(asked))


class VendorAllowlisted(Rule):
    """The vendor is on the workflow's allowlist of vendors whose invoices may be paid."""

    name = "vendor_allowlisted"

    def check(self, facts: Facts) -> Verdict:
        vendor = _invoice_of(facts).get("Vendor__c")
        allowed = policy.workflow_policy("invoice_exception")[0].allowlists.get("vendors", [])
        if vendor not in allowed:
            return self.failed(
                f"vendor {vendor!r} is not on the allowlist", vendor=vendor, allowlist=allowed
            )
        return self.passed("vendor is allowlisted", vendor=vendor)


def _po_mismatch(
    invoice: dict[str, Any], po_id: Any, po: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """Why the purchase order does not back the invoice ("" if it does), with the evidence."""
    evidence: dict[str, Any] = {"purchase_order_id": po_id}
    if not po_id:
        return "the invoice has no purchase order", evidence
    if po is None:
        return f"purchase order {po_id} does not exist", evidence
    evidence.update(po_status=po.get("Status__c"), po_number=po.get("Name"))
    if po.get("Status__c") != "Open":
        return f"purchase order {po.get('Name')} is {po.get('Status__c')}, not Open", evidence
    evidence.update(invoice_vendor=invoice.get("Vendor__c"), po_vendor=po.get("Vendor__c"))
    if invoice.get("Vendor__c") != po.get("Vendor__c"):
        return "the purchase order is another vendor's", evidence
    evidence.update(
        invoice_currency=invoice.get("CurrencyIsoCode"), po_currency=po.get("CurrencyIsoCode")
    )
    if invoice.get("CurrencyIsoCode") != po.get("CurrencyIsoCode"):
        return "the purchase order is in another currency", evidence
    amount, po_amount = _decimal(invoice.get("Amount__c")), _decimal(po.get("Amount__c"))
    if amount is None or po_amount is None:
        return "the invoice or the purchase order has no amount", evidence
    tolerance = config.current().invoices.tolerance(po_amount)
    evidence.update(
        invoice_amount=str(amount),
        po_amount=str(po_amount),
        difference=str(abs(amount - po_amount)),
        tolerance=str(tolerance),
    )
    if abs(amount - po_amount) > tolerance:
        return f"the invoice differs from the order by more than {tolerance}", evidence
    return "", evidence


class PurchaseOrderMatches(Rule):
    """The invoice has an open purchase order of the same vendor for the same amount."""

    name = "purchase_order_matches"

    def check(self, facts: Facts) -> Verdict:
        invoice = _invoice_of(facts)
        po_id = invoice.get(PURCHASE_ORDER)
        problem, evidence = _po_mismatch(invoice, po_id, facts.data.get("purchase_order"))
        if problem:
            return self.failed(problem, **evidence)
        return self.passed("the purchase order backs the invoice", **evidence)


class NewPurchaseOrderMatches(Rule):
    """A purchase order the update links is open, the vendor's, and for the invoice's amount."""

    name = "new_purchase_order_matches"

    def check(self, facts: Facts) -> Verdict:
        fields = facts.args["fields"]
        if PURCHASE_ORDER not in fields:
            return self.passed("the update links no purchase order")
        if not fields[PURCHASE_ORDER]:
            # Unlinking an order takes away what backs the invoice: a human decides that.
            return self.failed("the update clears the purchase order", purchase_order_id=None)
        # Judge the invoice as it will read after the update (vendor or amount may change too).
        after = {**_invoice_of(facts), **fields}
        problem, evidence = _po_mismatch(
            after, fields[PURCHASE_ORDER], facts.data["purchase_order"]
        )
        if problem:
            return self.failed(problem, **evidence)
        return self.passed("the purchase order backs the invoice", **evidence)


class InvoiceNumberUnpaid(Rule):
    """No other invoice record with this invoice number is already approved or paid."""

    name = "invoice_number_unpaid"

    def check(self, facts: Facts) -> Verdict:
        number = _invoice_of(facts).get("Name")
        others = facts.data.get("same_number") or []
        settled = [r for r in others if r.get("Status__c") in SETTLED]
        if settled:
            return self.failed(
                f"invoice number {number} is already {settled[0].get('Status__c')} "
                f"on {settled[0].get('Id')}",
                invoice_number=number,
                other_invoice_id=settled[0].get("Id"),
                other_status=settled[0].get("Status__c"),
            )
        return self.passed(
            "invoice number not paid elsewhere",
            invoice_number=number,
            same_number=[r.get("Id") for r in others],
        )


UPDATE_RULES: list[Rule] = [
    InvoiceIsTheJobs(),
    InvoiceExists(),
    InvoiceTransitionValid(),
    NewPurchaseOrderMatches(),
]
APPROVE_RULES: list[Rule] = [
    InvoiceIsTheJobs(),
    InvoiceExists(),
    InvoiceTransitionValid(),
    AmountMatchesInvoice(),
    VendorAllowlisted(),
    PurchaseOrderMatches(),
    InvoiceNumberUnpaid(),
]


def read_back_update(
    rec: Reader, args: dict[str, Any], _result: dict[str, Any], _key: str
) -> Verdict:
    """After the write: the invoice holds every field, in the form Salesforce stores it."""
    invoice_id = args["invoice_id"]
    record = _invoice(rec, invoice_id)
    if record is None:
        return Verdict(False, "invoice_exists", "the invoice is gone", {"invoice_id": invoice_id})
    differ = {
        k: {"wanted": v, "found": record.get(k)}
        for k, v in args["fields"].items()
        if not same_salesforce_value(record.get(k), v)
    }
    evidence = {"invoice_id": invoice_id, "fields": sorted(args["fields"])}
    if differ:
        return Verdict(
            False,
            "invoice_fields_match",
            f"the invoice does not hold {', '.join(sorted(differ))}",
            dict(evidence, differ=differ),
        )
    return Verdict(True, "invoice_update_confirmed", "the invoice holds every field", evidence)


def read_back_approve(
    rec: Reader, args: dict[str, Any], _result: dict[str, Any], _key: str
) -> Verdict:
    """After the write: the invoice is Approved, for the amount that was approved."""
    invoice_id = args["invoice_id"]
    record = _invoice(rec, invoice_id)
    if record is None:
        return Verdict(False, "invoice_exists", "the invoice is gone", {"invoice_id": invoice_id})
    status, amount = record.get("Status__c"), _decimal(record.get("Amount__c"))
    evidence = {
        "invoice_id": invoice_id,
        "status": status,
        "amount": str(args["amount"]),
        "invoice_amount": str(amount),
    }
    if status != "Approved":
        return Verdict(False, "invoice_approved", f"the invoice is {status}", evidence)
    if amount != _decimal(args["amount"]):
        return Verdict(False, "invoice_amount_unchanged", "the invoice's amount changed", evidence)
    return Verdict(True, "approval_confirmed", "the invoice is approved for the amount", evidence)
