"""invoice_exception: Salesforce flags an invoice as an exception.

The rules tier holds what it can prove wrong and corrects what it can prove (a missing
purchase order); approving a payment is irreversible and always goes to a reviewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from app.controls.calls import CallRecorder
from app.jobs.context import PlanningContext
from app.rules.invoices import plan_invoice_exception
from app.workflows.base import Workflow, WorkflowInput, unless_missing
from tools.salesforce import client as salesforce_api

_INVOICE_FIELDS = (
    "Id, Name, Vendor__c, Amount__c, CurrencyIsoCode, Purchase_Order__c, Due_Date__c, Status__c"
)
_ORDER_FIELDS = "Id, Name, Vendor__c, Amount__c, CurrencyIsoCode, Status__c"


class InvoiceExceptionInput(WorkflowInput):
    """invoice_exception: the Salesforce invoice record flagged as an exception.

    Only the record id is taken from the message: the workflow re-reads the record through
    the REST API and never acts on what the message itself says.
    """

    invoice_id: str = Field(pattern=r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
    sobject_type: Literal["Invoice__c"] = "Invoice__c"
    notification_id: str | None = Field(None, max_length=64)


def _soql_text(value: str) -> str:
    """A SOQL string literal (backslash escapes, as Salesforce reads them)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _soql(rec: CallRecorder, query: str) -> list[dict[str, Any]]:
    return rec.read(
        "salesforce.query",
        {"soql": query},
        lambda: salesforce_api.query(query),
    )


def read_context(
    job_input: dict[str, Any],
    requester: str,
    rec: CallRecorder,
    seen: Mapping[str, Any] | None,
) -> PlanningContext:
    """The invoice, its purchase order, other invoices with its number, its vendor's open
    orders (missing records None)."""
    invoice_id = job_input["invoice_id"]
    invoice = unless_missing(
        lambda: rec.tool("salesforce.get_invoice", {"invoice_id": invoice_id})["invoice"]
    )
    context: PlanningContext = {
        "input": job_input,
        "requester": requester,
        "invoice": invoice,
        "purchase_order": None,
        "same_number": [],
        "vendor_open_orders": [],
    }
    if invoice is None:
        return context
    po_id = invoice.get("Purchase_Order__c")
    if po_id:
        context["purchase_order"] = unless_missing(
            lambda: rec.read(
                "salesforce.get_purchase_order",
                {"record_id": po_id},
                lambda: salesforce_api.get_record("Purchase_Order__c", po_id),
            )
        )
    if invoice.get("Name"):
        context["same_number"] = _soql(
            rec,
            f"SELECT {_INVOICE_FIELDS} FROM Invoice__c WHERE Name = {_soql_text(invoice['Name'])}"
            f" AND Id != {_soql_text(invoice['Id'])}",
        )
    if invoice.get("Vendor__c"):
        context["vendor_open_orders"] = _soql(
            rec,
            f"SELECT {_ORDER_FIELDS} FROM Purchase_Order__c"
            f" WHERE Vendor__c = {_soql_text(invoice['Vendor__c'])} AND Status__c = 'Open'",
        )
    return context


WORKFLOW = Workflow(
    name="invoice_exception",
    input_model=InvoiceExceptionInput,
    read_context=read_context,
    plan=plan_invoice_exception,
    policy_doc="invoices",
    signals=frozenset({"target_is_the_jobs", "amount_matches_invoice"}),
    writes=("salesforce.update_invoice", "salesforce.approve_payment"),
    salesforce_sobject="Invoice__c",
)
