"""What each Stripe tool does. Refunds carry an idempotency key derived from the step's key."""

from __future__ import annotations

from typing import Any

from tools.stripe import client as stripe_api
from tools.stripe.args import GetChargeArgs, RefundArgs


def get_charge(args: GetChargeArgs, _key: str | None) -> dict[str, Any]:
    return {"charge": stripe_api.get_charge(args.charge_id)}


def refund(args: RefundArgs, key: str | None) -> dict[str, Any]:
    assert key is not None
    return stripe_api.refund(
        args.charge_id,
        args.amount,
        args.reason,
        idempotency_key=key,
        metadata={"opsgate_step": key},
    )
