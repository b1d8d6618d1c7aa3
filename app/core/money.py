"""Amounts in minor units, per ISO 4217 exponent (what Stripe's API speaks)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# Stripe's zero-decimal currencies: the amount is already in the smallest unit.
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)


def to_minor(amount: str | Decimal, currency: str) -> int:
    """Convert a decimal amount ("25.00", "19,99") to an integer of minor units."""
    text = str(amount).strip().replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not an amount: {amount!r}")
    exponent = 0 if currency.lower() in ZERO_DECIMAL else 2
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} {currency.upper()} has more precision than the currency")
    return int(minor)


def format_minor(amount: int, currency: str) -> str:
    """Format minor units for people: 2500, usd -> '25.00 USD'."""
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{Decimal(amount).scaleb(-2):.2f} {currency.upper()}"
