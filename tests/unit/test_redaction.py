"""app/redaction.py: PII out, everything else (dates, ids, amounts) left alone."""

from __future__ import annotations

import pytest

from app.redaction import redact, redact_event


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("write to alice@example.com please", "write to [email] please"),
        ("Alice.Adams+orders@mail.example.co.uk.", "[email]."),
        ("card 4242 4242 4242 4242 expires", "card [card] expires"),
        ("card 4111-1111-1111-1111.", "card [card]."),
        ("pan 5555555555554444", "pan [card]"),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [iban] ok"),
        ("iban GB82WEST12345698765432", "iban [iban]"),
        ("call +44 20 7946 0958 today", "call [phone] today"),
        ("or +1 (555) 123-4567", "or [phone]"),
        ("US line (555) 123-4567", "US line [phone]"),
    ],
)
def test_personal_data_is_redacted(text: str, redacted: str) -> None:
    assert redact(text) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "charged on 2026-11-24 at 10:30",
        "at 2026-11-24T10:30:00Z",
        "24/11/2026",
        "job 123e4567-e89b-12d3-a456-426614174000",
        "job 12345678-1234-1234-1234-123456789012",  # an all-digit uuid is not a card
        "refund $1,250.00 or 40.00 USD or 19,99 €",
        "order 4242424242424241",  # 16 digits, fails Luhn
        "ref 1234567812345678",
        "ticket 4821 charge ch_1001 amount 2500",
        "version 1.2.3, 99.5%",
    ],
)
def test_non_personal_data_is_untouched(text: str) -> None:
    assert redact(text) == text


def test_several_kinds_in_one_text() -> None:
    text = "alice@example.com paid with 4242424242424242 on 2026-11-24, call +33 1 23 45 67 89"

    assert redact(text) == "[email] paid with [card] on 2026-11-24, call [phone]"


def test_log_processor_redacts_string_values_only() -> None:
    event = {
        "event": "mail from bob@example.com",
        "timestamp": "2026-11-24T10:30:00Z",
        "amount": 4242424242424242,
        "job_id": "123e4567-e89b-12d3-a456-426614174000",
    }

    out = redact_event(None, "info", event)

    assert out == {
        "event": "mail from [email]",
        "timestamp": "2026-11-24T10:30:00Z",
        "amount": 4242424242424242,
        "job_id": "123e4567-e89b-12d3-a456-426614174000",
    }
