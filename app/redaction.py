"""PII redaction for text that leaves opsgate (logs now, model prompts later)."""

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
]


def redact(text: str) -> str:
    """Replace emails, IBANs, phone numbers and (Luhn-valid) card numbers with placeholders."""
    for name, pattern in _PATTERNS:
        text = pattern.sub(f"[{name}]", text)
    return _CARD.sub(_card, text)


def redact_event(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact every string value of a log event."""
    return {
        k: redact(v) if isinstance(v, str) and k != "timestamp" else v for k, v in event.items()
    }
