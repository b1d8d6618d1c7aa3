"""PII redaction for text that leaves opsgate: logs, and what is sent to a model vendor.

Covered: e-mail addresses; phone numbers in international (`+44 20 7946 0958`,
`0044 ...`) and common national formats (North American, UK, German, French, Spanish,
Italian); card numbers (13-19 digits, Luhn-checked); IBANs (mod-97-checked); US SSNs and
UK NI numbers. Not covered: names and postal addresses, which pass through unchanged.
"""

# Hand-written: no maintained library has these exact rules, the numbered placeholder
# mapping and a light enough footprint (presidio, for one, needs spaCy models from a hub).

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

# Each pattern starts with a character class, so that the regex engine skips in C to where
# a value may begin; the boundary checks follow that first character and look one further
# back (`(?<!\w.)`: the character before the first one is no word character).
# A value starts outside a word, or right after a JSON escape (`\n`, `\t`): prompts and
# stored payloads are redacted as serialized JSON.
_STARTED = r"(?:(?<![\w\\].)|(?<=\\[nrt].))"
# A number also does not continue an id or a date (`INV-1002`, `a1b2-0612-...`, `03.12.`)
# nor an international number whose shape was refused (`+`).
_NUM_STARTED = r"(?:(?<![\w\\+].)|(?<=\\[nrt].))(?<!\w[-./].)"
_NUM_END = r"(?!\w)(?![-./]\w)"

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]" + _STARTED + r"[A-Za-z0-9._%+-]*@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
)

# Country code, check digits, then the BBAN in groups of four (spaces optional). The
# checksum and lengths are verified in `_iban_length`.
_IBAN = re.compile(
    r"[A-Z]" + _STARTED + r"[A-Z]\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?!\w)",
    re.IGNORECASE,
)

# Any grouping (4-4-4-4, Amex 4-6-5, none); no issuer number starts with 0, and a `+` in
# front makes it an international phone number.
_CARD = re.compile(r"[1-9](?:(?<![\w\\+-].)|(?<=\\[nrt].))(?:[ -]?\d){12,18}(?![\w-])")

# SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000; one kind of separator.
_SSN = re.compile(
    r"[0-8]"
    + _NUM_STARTED
    + r"\d\d(?<!000|666)(?P<s>[- ])(?!00)\d{2}(?P=s)(?!0000)\d{4}"
    + _NUM_END
)

# HMRC rules: first letter not D F I Q U V, second not D F I O Q U V, and never the
# prefixes BG GB NK KN TN NT ZZ; suffix A-D.
_NI = re.compile(
    r"[A-CEGHJ-PR-TW-Z]" + _STARTED + r"[A-CEGHJ-NPR-TW-Z](?<!BG|GB|NK|KN|TN|NT|ZZ)"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)",
    re.IGNORECASE,
)

# Phone shapes as (first character, the rest): the pattern matches any first character,
# then each shape checks which one it was (`(?<=\+)`) and goes on from there.
# Every national shape needs a marker a plain number lacks: a trunk 0, separators in a
# phone's grouping, or parentheses. A bare run of digits without a leading 0 (an order
# number, an amount in cents, an epoch time) is never a phone. Digit counts are checked
# in `_phone_length`.
_PHONE_SHAPES = [
    # international: +CC or 00CC, digits in any grouping, "(0)" or "(20)" allowed
    (r"\+", r"[1-9](?:[ .-]?(?:\(\d{1,4}\)|\d)){6,14}"),
    (r"0", r"0[1-9]\d{0,2}[ .-](?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){5,12}"),
    # North American: (212) 555-0123, 212-555-0123, 212.555.0123, 212 555 0123, 1-800-...
    (r"\(", r"[2-9]\d\d\)[ ]?\d{3}[ .-]\d{4}"),
    (r"[2-9]", r"\d\d(?P<na>[ .-])\d{3}(?P=na)\d{4}"),
    (r"1", r"[ .-](?:\([2-9]\d\d\)[ ]?\d{3}[ .-]|[2-9]\d\d(?P<n1>[ .-])\d{3}(?P=n1))\d{4}"),
    # trunk 0 (UK, DE, FR, IT): (020) 7946 0958, 020 7946 0958, 030/12345678, 07700900123,
    # 01 23 45 67 89 (one kind of separator, so that 03.12.2026 10:30 is no phone)
    (r"\(", r"0[1-9]\d{0,4}\)[ ]?\d{2,8}(?:[ .-]\d{2,8}){0,3}"),
    (r"0", r"[1-9]\d{0,4}(?P<tr>[ ./-])\d{2,8}(?:(?P=tr)\d{2,8}){0,3}"),
    (r"0", r"[1-9]\d{8,10}"),
    # Spanish (no trunk 0): 612 345 678 (not next to a currency: an amount), 612 34 56 78,
    # 91 123 45 67
    (r"[6-9]", r"(?<![$€£][ ].)(?<![$€£].)\d\d(?P<es>[ .-])\d{3}(?P=es)\d{3}"
     r"(?![ ]?(?:€|EUR|USD|GBP|\$|£|%)|,\d)"),
    (r"[6-9]", r"\d\d(?P<es2>[ .-])\d\d(?P=es2)\d\d(?P=es2)\d\d"),
    (r"[89]", r"\d(?P<es3>[ .-])\d{3}(?P=es3)\d\d(?P=es3)\d\d"),
    # Italian mobile: 347 1234567 (347 123 4567 is the North American shape)
    (r"3", r"[1-9]\d[ ./-]\d{6,7}"),
]  # fmt: skip
_PHONE = re.compile(
    r"[+(\d]"
    + _NUM_STARTED
    + "(?:"
    + "|".join(f"(?<={first}){rest}" for first, rest in _PHONE_SHAPES)
    + ")"
    + _NUM_END
)

# Registered IBAN lengths (SWIFT IBAN registry); a lower- or mixed-case candidate must
# match one, an all-uppercase one only needs a valid checksum (countries added later).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _prefixes(value: str) -> list[int]:
    """Lengths a candidate may be cut to, longest first: all of it, or up to a space.

    A greedy match can run into a following number or word (`020 7946 0958 24 hours`);
    the value is then its longest valid prefix that ends before a space."""
    return [len(value)] + [i for i in range(len(value) - 1, 0, -1) if value[i] == " "]


def _whole(value: str) -> int:
    return len(value)


_DIGIT = re.compile(r"\d")


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def _has_at(text: str) -> bool:
    return "@" in text


def _card_length(value: str) -> int:
    for n in _prefixes(value):
        digits = value[:n].replace(" ", "").replace("-", "")
        # 13 digits from 1: epoch milliseconds; the only 13-digit cards were Visa's (4...).
        epoch_ms = len(digits) == 13 and digits[0] == "1"
        if 13 <= len(digits) <= 19 and not epoch_ms and _luhn_ok(digits):
            return n
    return 0


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    upper = compact.upper()
    if compact != upper and _IBAN_LENGTHS.get(upper[:2]) != len(upper):
        return False
    rearranged = upper[4:] + upper[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_length(value: str) -> int:
    for n in _prefixes(value):
        if _iban_ok(value[:n].replace(" ", "")):
            return n
    return 0


def _phone_length(value: str) -> int:
    if value.startswith(("+", "00")):
        low, high = 8, 15  # E.164 allows 15 digits with the country code
    elif value.startswith(("0", "(0")):
        low, high = (9, 12) if not value.isdigit() else (10, 12)
    else:
        return len(value)  # the other shapes have a fixed number of digits
    for n in _prefixes(value):
        if low <= sum(ch.isdigit() for ch in value[:n]) <= high:
            return n
    return 0


@dataclass(frozen=True)
class _Detector:
    """One class of personal data: candidates by pattern, then a check of each."""

    kind: str
    pattern: re.Pattern[str]
    # How much of a candidate is the value (its length; 0: not one).
    length: Callable[[str], int] = _whole
    # A cheap test that lets most texts skip the pattern: what every value contains.
    needs: Callable[[str], bool] = _has_digit
    # A refused candidate is still this shape and nothing else: later detectors skip it
    # (the digit groups of an IBAN with a wrong checksum are not a phone number).
    holds_refused: bool = False


# In this order, so that each value is claimed by its own class: e-mail first (a local
# part may hold a phone number or a card), IBAN before card (a BBAN's digits may pass
# Luhn), card before phone (16 spaced digits look like a long phone number), national ids
# before phone (123 45 6789). Phone is last and refuses what the others may have left.
_DETECTORS = (
    _Detector("email", _EMAIL, needs=_has_at),
    _Detector("iban", _IBAN, _iban_length, holds_refused=True),
    _Detector("card", _CARD, _card_length),
    _Detector("national_id", _SSN),
    _Detector("national_id", _NI),
    _Detector("phone", _PHONE, _phone_length),
)


_HOLD_OPEN, _HOLD_CLOSE = "\ue000", "\ue001"  # private use: never in real text
_HELD = re.compile(_HOLD_OPEN + r"(\d+)" + _HOLD_CLOSE)


def _replace_all(text: str, replacement: Callable[[str, str], str]) -> str:
    """`text` with each value of each detector replaced by `replacement(kind, value)`."""
    held: list[str] = []
    holding = _HOLD_OPEN not in text
    for detector in _DETECTORS:
        if detector.needs(text):
            text = _replace(detector, text, replacement, held, holding)
    if held:
        text = _HELD.sub(lambda m: held[int(m[1])], text)
    return text


def _replace(
    detector: _Detector,
    text: str,
    replacement: Callable[[str, str], str],
    held: list[str],
    holding: bool,
) -> str:
    spans: list[tuple[int, int, str | None]] = []  # None: a refused candidate to hold
    pos = 0
    while (match := detector.pattern.search(text, pos)) is not None:
        start = match.start()
        n = detector.length(match[0])
        if n:
            spans.append((start, start + n, replacement(detector.kind, match[0][:n])))
            pos = start + n
        else:
            if detector.holds_refused and holding:
                spans.append((start, match.end(), None))
            pos = start + 1  # a shorter candidate may start inside this one
    if not spans:
        return text
    parts: list[str] = []
    done = 0
    for i, (start, end, new) in enumerate(spans):
        if new is None:
            # up to the next candidate, which may be a valid value inside this one
            end = min(end, spans[i + 1][0]) if i + 1 < len(spans) else end
            held.append(text[start:end])
            new = f"{_HOLD_OPEN}{len(held) - 1}{_HOLD_CLOSE}"
        parts += (text[done:start], new)
        done = end
    return "".join(parts) + text[done:]


def _marker(kind: str, _value: str) -> str:
    return f"[{kind}]"


def redact(text: str) -> str:
    """Replace e-mail addresses, phone numbers, card numbers, IBANs and national ids with
    `[email]`, `[phone]`, `[card]`, `[iban]`, `[national_id]` (names and addresses stay)."""
    return _replace_all(text, _marker)


_PLACEHOLDER = re.compile(r"\[(?:" + "|".join({d.kind: 0 for d in _DETECTORS}) + r")_\d+\]")


class Placeholders:
    """Redaction for model prompts: numbered placeholders ([email_1]) mapped back in opsgate.

    The same value always gets the same placeholder within one job's prompt, so the model
    can refer to it; `restore` puts the real values back into what the model proposed.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._by_value:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            name = f"[{kind}_{self._counts[kind]}]"
            self._by_value[key] = name
            self.values[name] = value
        return self._by_value[key]

    def redact(self, text: str) -> str:
        """The text with every piece of PII replaced by its placeholder."""
        return _replace_all(text, self._placeholder)

    def restore(self, value: Any) -> Any:
        """`value` (strings, lists, dicts) with placeholders turned back into the real values."""
        if isinstance(value, str):
            return _PLACEHOLDER.sub(lambda m: self.values.get(m[0], m[0]), value)
        if isinstance(value, list):
            return [self.restore(v) for v in value]
        if isinstance(value, dict):
            return {k: self.restore(v) for k, v in value.items()}
        return value


def redact_event(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact every string value of a log event."""
    return {
        k: redact(v) if isinstance(v, str) and k != "timestamp" else v for k, v in event.items()
    }
