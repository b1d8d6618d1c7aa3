"""config/verifiers.yaml: soft-check thresholds per workflow, the invoice tolerance and the
refund window."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from app.core import configfile


class WorkflowCheck(BaseModel):
    """One workflow's soft-check settings."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0, le=1)


class SoftCheckConfig(BaseModel):
    """The soft check: a default threshold and per-workflow overrides."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.85, ge=0, le=1)
    workflows: dict[str, WorkflowCheck] = Field(default_factory=dict)

    def threshold_for(self, workflow: str) -> float:
        """The workflow's confidence threshold (the default when it sets none)."""
        found = self.workflows.get(workflow)
        return found.threshold if found else self.threshold


class InvoiceConfig(BaseModel):
    """How closely an invoice must match its purchase order."""

    model_config = ConfigDict(extra="forbid")

    po_tolerance_absolute: Decimal = Field(Decimal("1.00"), ge=0)
    po_tolerance_percent: Decimal = Field(Decimal("0.5"), ge=0, le=100)

    def tolerance(self, po_amount: Decimal) -> Decimal:
        """The largest difference from the order's amount that still counts as a match."""
        return max(self.po_tolerance_absolute, abs(po_amount) * self.po_tolerance_percent / 100)


class RefundConfig(BaseModel):
    """How old a charge may be to be refunded, and what counts as a double charge."""

    model_config = ConfigDict(extra="forbid")

    # Refunds only within this many days of the charge's creation (Stripe's `created`).
    window_days: int = Field(30, ge=1, le=3650)
    # Two charges of one customer with the same amount and currency at most this many days
    # apart are a double charge (a `duplicate` refund reason needs one).
    duplicate_within_days: int = Field(7, ge=1, le=365)


class VerifiersConfig(BaseModel):
    """The file's top level."""

    model_config = ConfigDict(extra="forbid")

    soft_check: SoftCheckConfig = Field(default_factory=SoftCheckConfig)
    invoices: InvoiceConfig = Field(default_factory=InvoiceConfig)
    refund: RefundConfig = Field(default_factory=RefundConfig)


def current() -> VerifiersConfig:
    """The verifier settings in force; re-read when the file changes."""
    return configfile.current("verifiers.yaml", VerifiersConfig)
