"""Amounts stated in a customer's words: with a currency ("$90.00", "90 EUR", "€90,00") or
bare. Read by the rules tier, the soft check and a reviewer's restatement."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.core.money import to_minor

# A number, with optional thousands separators ("1,250.00", "1.234,56") and decimals; never
# cut inside a longer number.
_NUM = r"(\d{1,3}(?:[,.']\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)(?![\d])"
_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy"}
_AMOUNT_PATTERNS = (
    re.compile(r"([$€£¥])\s?" + _NUM),
    re.compile(r"(?<![\d.,])" + _NUM + r"\s?([$€£¥])"),
    re.compile(r"\b([A-Z]{3})\s?" + _NUM),
    re.compile(r"(?<![\d.,])" + _NUM + r"\s?([A-Z]{3})\b"),
)
_BARE_NUMBER = re.compile(r"(?<![\w.,])" + _NUM)
_CURRENCIES = frozenset({"usd", "eur", "gbp", "cad", "aud", "chf", "jpy", "sek", "nok", "dkk"})


@dataclass(frozen=True)
class StatedAmount:
    """An amount the requester wrote, with its currency."""

    minor: int
    currency: str


def _plain_number(number: str) -> str:
    """'1,250.00' -> '1250.00'; '1.234,56' -> '1234.56'; '19,99' -> '19.99'."""
    last = max(number.rfind(","), number.rfind("."))
    if last != -1 and len(number) - last - 1 in (1, 2):
        whole, decimals = number[:last], number[last + 1 :]
    else:
        whole, decimals = number, ""
    whole = re.sub(r"[,.']", "", whole)
    return f"{whole}.{decimals}" if decimals else whole


@dataclass(frozen=True)
class AmountSpan:
    """Where an amount with its currency is stated in a text: `text[start:end]` is the whole
    statement, symbol or code included ("$90.00", "90.00 USD", "USD 90", "€90,00")."""

    start: int
    end: int
    amount: StatedAmount


def find_amount_spans(text: str) -> list[AmountSpan]:
    """Every amount with an explicit currency and where it is stated, in text order."""
    found: dict[int, AmountSpan] = {}
    for pattern in _AMOUNT_PATTERNS:
        for match in pattern.finditer(text):
            a, b = match.groups()
            symbol, number = (a, b) if not a[0].isdigit() else (b, a)
            currency = _SYMBOLS.get(symbol, symbol.lower())
            if currency not in _CURRENCIES:
                continue
            try:
                amount = StatedAmount(to_minor(_plain_number(number), currency), currency)
            except ValueError:
                continue
            start = match.start(1) if a[0].isdigit() else match.start(2)
            known = found.get(start)
            if known is None:
                found[start] = AmountSpan(match.start(), match.end(), amount)
            elif known.amount == amount:
                # "$90.00 USD": symbol and code state one amount; the span covers both.
                found[start] = AmountSpan(
                    min(known.start, match.start()), max(known.end, match.end()), amount
                )
    return [found[k] for k in sorted(found)]


def find_amounts(text: str) -> list[StatedAmount]:
    """Every amount with an explicit currency, in the order they appear in the text."""
    return [span.amount for span in find_amount_spans(text)]


def find_bare_numbers(text: str) -> list[tuple[int, int, str]]:
    """Every number in the text as (start, end, plain decimal), "1,250.00" -> "1250.00".
    Digits glued to letters or an underscore (ch_1003) are an identifier, not a number;
    amounts with a currency are found too (callers drop what `find_amount_spans` covers)."""
    return [(m.start(1), m.end(1), _plain_number(m.group(1))) for m in _BARE_NUMBER.finditer(text)]


def find_amount(text: str) -> StatedAmount | None:
    """The first amount with an explicit currency in the text."""
    amounts = find_amounts(text)
    return amounts[0] if amounts else None
