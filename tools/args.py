"""Argument models of every catalog tool (validated before any call)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SF_ID = r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"
# An Okta object id: 20 characters as Okta issues them, 6 to 32 accepted. One anchored pattern
# (no alternation of anchored patterns): llama.cpp's grammar compiler cannot compile an anchor
# inside a pattern and would let any string through, such as a redacted login placeholder.
_OKTA_ID = r"^[A-Za-z0-9]{6,32}$"
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


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GetTicketArgs(ToolArgs):
    """zendesk.get_ticket."""

    ticket_id: int = Field(gt=0)


class AddCommentArgs(ToolArgs):
    """zendesk.add_comment (public = customer-facing)."""

    ticket_id: int = Field(gt=0)
    body: str = Field(min_length=1, max_length=10_000)
    public: bool = False


class UpdateTicketArgs(ToolArgs):
    """zendesk.update_ticket: only the fields given change."""

    ticket_id: int = Field(gt=0)
    status: Literal["open", "pending", "hold", "solved"] | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    tags: list[str] | None = Field(None, max_length=50)
    group_id: int | None = Field(None, gt=0)

    def changes(self) -> dict[str, Any]:
        """The ticket fields this call sets."""
        return self.model_dump(exclude={"ticket_id"}, exclude_none=True)


class GetChargeArgs(ToolArgs):
    """stripe.get_charge."""

    charge_id: str = Field(pattern=r"^ch_[A-Za-z0-9_]+$")


class RefundArgs(ToolArgs):
    """stripe.refund: amount in minor units of the charge's currency."""

    charge_id: str = Field(pattern=r"^ch_[A-Za-z0-9_]+$")
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] = "requested_by_customer"


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


class GetUserArgs(ToolArgs):
    """okta.get_user."""

    login: str = Field(min_length=3, max_length=255)


class UserArgs(ToolArgs):
    """okta.reset_password and okta.suspend_user."""

    user_id: str = Field(pattern=_OKTA_ID)


class AddToGroupArgs(ToolArgs):
    """okta.add_to_group."""

    user_id: str = Field(pattern=_OKTA_ID)
    group_id: str = Field(pattern=_OKTA_ID)
