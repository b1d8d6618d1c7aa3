"""app/core/money.py: decimal amounts to Stripe minor units and back."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.core.money import format_minor, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("25.00", "usd", 2500),
        ("25", "usd", 2500),
        ("19,99", "eur", 1999),  # decimal comma
        (" 0.5 ", "gbp", 50),
        (Decimal("40.10"), "USD", 4010),  # currency case does not matter
        ("500", "jpy", 500),  # zero-decimal: already the smallest unit
        ("500", "JPY", 500),
        ("1200", "krw", 1200),
        ("0", "usd", 0),
    ],
)
def test_to_minor(amount: str | Decimal, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("25.001", "usd"), ("0.005", "eur"), ("500.5", "jpy"), ("1,5", "jpy")],
)
def test_more_precision_than_the_currency_is_refused(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match="more precision"):
        to_minor(amount, currency)


@pytest.mark.parametrize("amount", ["abc", "", "12..5", "$25"])
def test_non_amounts_are_refused(amount: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        to_minor(amount, "usd")


def test_infinity_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        to_minor("Infinity", "usd")


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (2500, "usd", "25.00 USD"),
        (1999, "eur", "19.99 EUR"),
        (5, "gbp", "0.05 GBP"),
        (0, "usd", "0.00 USD"),
        (500, "jpy", "500 JPY"),
        (500, "JPY", "500 JPY"),
        (123456, "usd", "1234.56 USD"),
    ],
)
def test_format_minor(minor: int, currency: str, shown: str) -> None:
    assert format_minor(minor, currency) == shown


@pytest.mark.parametrize(("minor", "currency"), [(1999, "usd"), (1, "eur"), (777, "jpy")])
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    number, code = format_minor(minor, currency).split()
    assert to_minor(number, code) == minor
