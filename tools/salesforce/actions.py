"""What each Salesforce tool does. The REST API has no idempotency keys: every write reads the
record first and treats the wanted state, in the form Salesforce stores it, as already done."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.errors import PermanentError
from tools.salesforce import client as salesforce_api
from tools.salesforce.args import (
    ApprovePaymentArgs,
    GetInvoiceArgs,
    UpdateInvoiceArgs,
)

INVOICE = "Invoice__c"


def get_invoice(args: GetInvoiceArgs, _key: str | None) -> dict[str, Any]:
    return {"invoice": salesforce_api.get_record(INVOICE, args.invoice_id)}


def same_salesforce_value(stored: Any, wanted: Any) -> bool:
    """Whether Salesforce already holds `wanted`, in the form it stores it on save: numbers
    as numbers ("800.00" is 800.0), "" as null, 15-character ids as their 18-character form."""
    if wanted == "":
        wanted = None
    if stored is None or wanted is None:
        return stored is None and wanted is None
    if isinstance(stored, int | float) and not isinstance(stored, bool):
        try:
            return Decimal(str(stored)) == Decimal(str(wanted))
        except ArithmeticError:
            return False
    if (
        isinstance(stored, str)
        and isinstance(wanted, str)
        and len(stored) == 18
        and len(wanted) == 15
        and stored.isalnum()
    ):
        return stored[:15] == wanted
    return bool(stored == wanted)


def update_invoice(args: UpdateInvoiceArgs, _key: str | None) -> dict[str, Any]:
    record = salesforce_api.get_record(INVOICE, args.invoice_id)
    if all(same_salesforce_value(record.get(k), v) for k, v in args.fields.items()):
        return {"id": args.invoice_id, "fields": args.fields, "already_applied": True}
    salesforce_api.update_record(INVOICE, args.invoice_id, dict(args.fields))
    return {"id": args.invoice_id, "fields": args.fields, "already_applied": False}


def approve_payment(args: ApprovePaymentArgs, _key: str | None) -> dict[str, Any]:
    record = salesforce_api.get_record(INVOICE, args.invoice_id)
    if Decimal(str(record.get("Amount__c"))) != args.amount:
        raise PermanentError(
            f"invoice {args.invoice_id} is for {record.get('Amount__c')}, "
            f"not {args.amount}: refusing to approve"
        )
    if record.get("Status__c") == "Approved":
        return {"id": args.invoice_id, "status": "Approved", "already_applied": True}
    salesforce_api.update_record(INVOICE, args.invoice_id, {"Status__c": "Approved"})
    return {"id": args.invoice_id, "status": "Approved", "already_applied": False}
