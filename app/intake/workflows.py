"""Workflows opsgate runs, each with the input model its submissions must match."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator


class WorkflowInput(BaseModel):
    """Base of every workflow input: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class SupportRefundInput(WorkflowInput):
    """support_refund: the Zendesk ticket that asks for the refund."""

    ticket_id: int = Field(gt=0)


class InvoiceExceptionInput(WorkflowInput):
    """invoice_exception: the Salesforce invoice record flagged as an exception.

    Only the record id is taken from the message: the workflow re-reads the record through
    the REST API and never acts on what the message itself says.
    """

    invoice_id: str = Field(pattern=r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
    sobject_type: Literal["Invoice__c"] = "Invoice__c"
    notification_id: str | None = Field(None, max_length=64)


class ItRequestInput(WorkflowInput):
    """it_request: an access, reset or offboarding request from a service desk."""

    request_type: Literal["password_reset", "group_access", "offboarding"]
    target_login: EmailStr
    group_id: str | None = Field(None, min_length=1, max_length=64)
    justification: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _group_for_access(self) -> ItRequestInput:
        if self.request_type == "group_access" and not self.group_id:
            raise ValueError("group_access needs group_id")
        return self


INPUT_MODELS: dict[str, type[WorkflowInput]] = {
    "support_refund": SupportRefundInput,
    "invoice_exception": InvoiceExceptionInput,
    "it_request": ItRequestInput,
}
