"""Argument models of the Stripe tools (validated before any call)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tools.base import ToolArgs


class GetChargeArgs(ToolArgs):
    """stripe.get_charge."""

    charge_id: str = Field(pattern=r"^ch_[A-Za-z0-9_]+$")


class RefundArgs(ToolArgs):
    """stripe.refund: amount in minor units of the charge's currency."""

    charge_id: str = Field(pattern=r"^ch_[A-Za-z0-9_]+$")
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] = "requested_by_customer"
