"""invoice_exception in the rules tier: hold, link a purchase order, or approve the payment.

The context (read by `app.stages.plan.gather_context`) holds the invoice record, its purchase
order, other invoices with the same number and the vendor's open orders. The cases here are
the ones the finance policy states plainly; anything else is left to the model tiers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from app.controls import policy
from app.jobs.context import PlanningContext
from app.jobs.steps import Plan, PlanEscalation, Step
from verifiers import config

WORKFLOW = "invoice_exception"
SETTLED = ("Paid", "Approved")
# Statuses the rules plan for; an invoice someone put on hold or rejected is a person's call.
PLANNABLE = ("New", "Exception")
_HOLD_REASON_MAX = 255  # Hold_Reason__c is a 255-character text field


def plan_invoice_exception(context: PlanningContext) -> Plan | None:
    """A plan for a flagged invoice the rules recognize; None to leave it to the model tiers."""
    invoice = context.get("invoice")
    if not invoice:
        return None
    status = invoice.get("Status__c")
    if status in SETTLED:
        return Plan(
            workflow=WORKFLOW,
            summary=f"Invoice {invoice.get('Name')} is already {status}",
            confidence=0.95,
            escalate=PlanEscalation(
                reason=f"invoice is already {status}: nothing to do",
                rule="invoice_transition_valid",
            ),
        )
    amount = _decimal(invoice.get("Amount__c"))
    vendor = invoice.get("Vendor__c")
    if status not in PLANNABLE or amount is None or amount <= 0 or not vendor:
        return None
    case = _Case(context, invoice, amount)
    workflow_policy, _ = policy.workflow_policy(WORKFLOW)
    if vendor not in workflow_policy.allowlists.get("vendors", []):
        return case.hold(
            f"Vendor {vendor} is not on the approved vendor list",
            "policy:invoices#approved-vendors",
        )
    same_number = [r for r in context.get("same_number") or [] if r.get("Id") != invoice.get("Id")]
    settled = [r for r in same_number if r.get("Status__c") in SETTLED]
    if settled:
        other = settled[0]
        return case.hold(
            f"Duplicate of invoice {other.get('Name')} already {other.get('Status__c')} "
            f"({other.get('Id')})",
            "policy:invoices#duplicates",
            f"invoice:{other.get('Id')}",
        )
    # Same number, not settled yet: still plannable, but the approver must know (approving
    # both would pay twice).
    case.pending = [r for r in same_number if r.get("Status__c") != "Rejected"]
    if invoice.get("Purchase_Order__c"):
        return case.with_order(context.get("purchase_order"))
    return case.without_order(context.get("vendor_open_orders") or [])


class _Case:
    """One invoice being planned: the steps and texts its plans share."""

    def __init__(self, context: PlanningContext, invoice: dict[str, Any], amount: Decimal) -> None:
        self.invoice = invoice
        self.amount = amount
        self.name = str(invoice.get("Name") or invoice.get("Id"))
        self.currency = str(invoice.get("CurrencyIsoCode") or "")
        job_input = context.get("input") or {}
        # The id the job names (15 or 18 characters), so the verifiers see the job's invoice.
        self.invoice_id = str(job_input.get("invoice_id") or invoice["Id"])
        self.pending: list[dict[str, Any]] = []

    def shown(self, amount: Decimal, currency: str | None = None) -> str:
        return f"{amount:.2f} {currency if currency is not None else self.currency}".strip()

    def hold(self, reason: str, *evidence: str) -> Plan:
        """One step: put the invoice on hold with the reason."""
        return Plan(
            workflow=WORKFLOW,
            summary=f"Hold invoice {self.name}: {reason}",
            confidence=0.95,
            steps=[
                Step(
                    id="hold",
                    tool="salesforce.update_invoice",
                    args={
                        "invoice_id": self.invoice_id,
                        "fields": {
                            "Status__c": "On Hold",
                            "Hold_Reason__c": reason[:_HOLD_REASON_MAX],
                        },
                    },
                    rationale=f"{reason}; the invoice is not approved for payment.",
                    evidence=[f"invoice:{self.name}", *evidence, "policy:invoices#holds"],
                )
            ],
        )

    def approve_step(self, rationale: str, *evidence: str) -> Step:
        return Step(
            id="approve",
            tool="salesforce.approve_payment",
            args={"invoice_id": self.invoice_id, "amount": f"{self.amount:.2f}"},
            rationale=rationale + self._due_note() + self._duplicate_note(),
            evidence=[
                f"invoice:{self.name}",
                *evidence,
                *(f"invoice:{r.get('Id')}" for r in self.pending),
                "policy:invoices#approval",
            ],
        )

    def _duplicate_note(self) -> str:
        if not self.pending:
            return ""
        others = ", ".join(f"{r.get('Id')} ({r.get('Status__c')})" for r in self.pending)
        return (
            f" Other invoices carry the number {self.name} and are not settled: {others}; "
            "approve only one of them."
        )

    def _due_note(self) -> str:
        due = _date(self.invoice.get("Due_Date__c"))
        if due is not None and due < datetime.now(UTC).date():
            return f" The due date {due.isoformat()} has passed: the payment is late."
        return ""

    def with_order(self, order: dict[str, Any] | None) -> Plan | None:
        """The invoice names a purchase order: approve when it matches, else hold."""
        if not order:
            return None  # a dangling reference: not a case the rules know
        po = str(order.get("Name") or order.get("Id"))
        evidence = (f"po:{po}", "policy:invoices#matching")
        if order.get("Status__c") != "Open":
            return self.hold(
                f"Purchase order {po} is {order.get('Status__c')}, not Open", *evidence
            )
        if order.get("Vendor__c") != self.invoice.get("Vendor__c"):
            return self.hold(
                f"Vendor {self.invoice.get('Vendor__c')} differs from purchase order {po}'s "
                f"vendor {order.get('Vendor__c')}",
                *evidence,
            )
        order_amount = _decimal(order.get("Amount__c"))
        if order_amount is None:
            return None
        if order.get("CurrencyIsoCode") != self.invoice.get("CurrencyIsoCode"):
            return self.hold(
                f"Invoice amount {self.shown(self.amount)} is in another currency than "
                f"purchase order {po}'s {self.shown(order_amount, order.get('CurrencyIsoCode'))}",
                *evidence,
            )
        tolerance = config.current().invoices.tolerance(order_amount)
        difference = abs(self.amount - order_amount)
        if difference > tolerance:
            return self.hold(
                f"Invoice amount {self.shown(self.amount)} differs from purchase order {po}'s "
                f"{self.shown(order_amount)} by {difference:.2f}, more than the "
                f"{_cents(tolerance)} tolerance",
                *evidence,
            )
        return Plan(
            workflow=WORKFLOW,
            summary=f"Approve payment of {self.shown(self.amount)} on invoice {self.name}",
            confidence=0.95,
            steps=[
                self.approve_step(
                    f"The invoice matches purchase order {po} (vendor {order.get('Vendor__c')}, "
                    f"{self.shown(order_amount)}, Open) within the {_cents(tolerance)} tolerance, "
                    "and the vendor is on the approved list.",
                    *evidence,
                )
            ],
        )

    def without_order(self, orders: list[dict[str, Any]]) -> Plan:
        """No purchase order: link the vendor's one matching open order and approve, else hold."""
        vendor = self.invoice.get("Vendor__c")
        matching = [o for o in orders if self._fits(o)]
        if len(matching) != 1:
            found = (
                f"{len(matching)} open orders of {vendor} match it ("
                + ", ".join(str(o.get("Name")) for o in matching)
                + ")"
                if matching
                else f"no open order of {vendor} matches it"
            )
            return self.hold(
                f"No purchase order on the invoice, and {found} for {self.shown(self.amount)}",
                "policy:invoices#missing-purchase-orders",
            )
        order = matching[0]
        po = str(order.get("Name") or order.get("Id"))
        evidence = (f"po:{po}", "policy:invoices#missing-purchase-orders")
        return Plan(
            workflow=WORKFLOW,
            summary=(
                f"Link purchase order {po} to invoice {self.name} and approve payment of "
                f"{self.shown(self.amount)}"
            ),
            confidence=0.95,
            steps=[
                Step(
                    id="link_po",
                    tool="salesforce.update_invoice",
                    args={
                        "invoice_id": self.invoice_id,
                        "fields": {"Purchase_Order__c": order["Id"]},
                    },
                    rationale=(
                        f"The invoice has no purchase order; {po} is the only open order of "
                        f"{vendor} whose amount matches {self.shown(self.amount)}."
                    ),
                    evidence=[f"invoice:{self.name}", *evidence],
                ),
                self.approve_step(
                    f"With {po} linked the invoice matches its purchase order, and the vendor "
                    "is on the approved list.",
                    *evidence,
                ),
            ],
        )

    def _fits(self, order: dict[str, Any]) -> bool:
        """An open order of the invoice's vendor, in its currency, for its amount."""
        order_amount = _decimal(order.get("Amount__c"))
        return (
            order.get("Status__c") == "Open"
            and order.get("Vendor__c") == self.invoice.get("Vendor__c")
            and order.get("CurrencyIsoCode") == self.invoice.get("CurrencyIsoCode")
            and bool(order.get("Id"))
            and order_amount is not None
            and abs(self.amount - order_amount) <= config.current().invoices.tolerance(order_amount)
        )


def _cents(tolerance: Decimal) -> str:
    """The tolerance as the texts show it: rounded down to the cent, the largest difference
    in cents that still matches (0.5% of 333.33 is 1.66665: a 1.67 difference is beyond it,
    and "by 1.67, more than the 1.67 tolerance" would read as a contradiction)."""
    return f"{tolerance.quantize(Decimal('0.01'), rounding=ROUND_FLOOR):.2f}"


def _decimal(value: Any) -> Decimal | None:
    """A record's number as a Decimal (Salesforce sends doubles: go through str)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
