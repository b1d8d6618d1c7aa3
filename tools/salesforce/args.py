"""Argument models of the Salesforce tools (validated before any call)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator

from tools.base import ToolArgs

_SF_ID = r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"


# Invoice fields an agent may change; everything else on the record is off limits.
INVOICE_FIELDS = frozenset(
    {
        "Amount__c",
        "Vendor__c",
        "Due_Date__c",
        "Purchase_Order__c",
        "Status__c",
        "Hold_Reason__c",
        "Exception_Reason__c",
    }
)


class GetInvoiceArgs(ToolArgs):
    """salesforce.get_invoice."""

    invoice_id: str = Field(pattern=_SF_ID)


class UpdateInvoiceArgs(ToolArgs):
    """salesforce.update_invoice: a few named fields of Invoice__c."""

    invoice_id: str = Field(pattern=_SF_ID)
    fields: dict[str, Any] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - INVOICE_FIELDS
        if unknown:
            raise ValueError(f"fields not allowed: {', '.join(sorted(unknown))}")
        if value.get("Status__c") in ("Approved", "Paid"):
            raise ValueError("approving or paying goes through salesforce.approve_payment")
        return value


class ApprovePaymentArgs(ToolArgs):
    """salesforce.approve_payment: the amount must be the invoice's amount."""

    invoice_id: str = Field(pattern=_SF_ID)
    amount: Decimal = Field(gt=0, max_digits=14, decimal_places=2)
