"""PII redaction for text that leaves opsgate: logs, and what is sent to a model vendor."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[card]" if _luhn_ok(digits) else match.group(0)


_PATTERNS = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")),
    # International (+...) or North-American (555) 123-4567 forms only, so that dates,
    # ids and amounts are left alone.
    ("phone", re.compile(r"\+\d[\d ()-]{7,}\d\b|\(\d{3}\)\s?\d{3}-\d{4}\b")),
    # US social security and UK national insurance numbers.
    (
        "national_id",
        re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
    ),
]


def redact(text: str) -> str:
    """Replace emails, IBANs, phone numbers and (Luhn-valid) card numbers with placeholders."""
    for name, pattern in _PATTERNS:
        text = pattern.sub(f"[{name}]", text)
    return _CARD.sub(_card, text)


class Placeholders:
    """Redaction for model prompts: numbered placeholders ([email_1]) mapped back in opsgate.

    The same value always gets the same placeholder within one job's prompt, so the model
    can refer to it; `restore` puts the real values back into what the model proposed.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self._by_value: dict[tuple[str, str], str] = {}

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._by_value:
            count = sum(1 for k, _ in self._by_value if k == kind) + 1
            name = f"[{kind}_{count}]"
            self._by_value[key] = name
            self.values[name] = value
        return self._by_value[key]

    def redact(self, text: str) -> str:
        """The text with every piece of PII replaced by its placeholder."""
        for kind, pattern in _PATTERNS:

            def named(match: re.Match[str], kind: str = kind) -> str:
                return self._placeholder(kind, match.group(0))

            text = pattern.sub(named, text)

        def card(match: re.Match[str]) -> str:
            digits = re.sub(r"[ -]", "", match.group(0))
            return self._placeholder("card", match.group(0)) if _luhn_ok(digits) else match.group(0)

        return _CARD.sub(card, text)

    def restore(self, value: Any) -> Any:
        """`value` (strings, lists, dicts) with placeholders turned back into the real values."""
        if isinstance(value, str):
            for name, real in self.values.items():
                value = value.replace(name, real)
            return value
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
