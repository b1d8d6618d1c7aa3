"""app/core/redaction.py: PII out, everything else (dates, ids, amounts) left alone."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.redaction import Placeholders, redact, redact_event

EMAILS = [
    "alice@example.com",
    "user+tag@sub.example.co.uk",
    "ALICE.ADAMS@EXAMPLE.COM",
    "first_last-2@mail.example.org",
]
PHONES = [
    # international
    "+44 20 7946 0958",
    "+1-212-555-0123",
    "+49 (0)30 12345678",
    "+33 1 23 45 67 89",
    "0044 20 7946 0958",
    "+442079460958",
    "+1 (555) 123-4567",
    # North American national
    "(212) 555-0123",
    "212-555-0123",
    "212.555.0123",
    "212 555 0123",
    "1-800-555-0199",
    # UK
    "020 7946 0958",
    "07700 900123",
    "0161 496 0000",
    "(020) 7946 0958",
    "07700900123",
    # Germany
    "030 12345678",
    "0151 23456789",
    "030/12345678",
    # France
    "01 23 45 67 89",
    "06.12.34.56.78",
    "0612345678",
    # Spain
    "612 345 678",
    "612 34 56 78",
    "91 123 45 67",
    # Italy
    "06 1234 5678",
    "347 1234567",
    "347 123 4567",
]
CARDS = [
    "4242 4242 4242 4242",  # Visa
    "4111-1111-1111-1111",  # Visa, dashes
    "5555555555554444",  # Mastercard
    "3782 822463 10005",  # Amex, 4-6-5
    "6011 1111 1111 1117",  # Discover
    "3056 9309 0259 04",  # Diners, 14 digits
]
IBANS = [
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "gb82 west 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "BE68 5390 0754 7034",
    "NO93 8601 1117 947",
]
NATIONAL_IDS = [
    "123-45-6789",
    "123 45 6789",
    "078-05-1120",
    "AB 12 34 56 C",
    "AB123456C",
    "JG 10 37 48 D",
    "ab123456a",
]
POSITIVES = [
    *[(v, "email") for v in EMAILS],
    *[(v, "phone") for v in PHONES],
    *[(v, "card") for v in CARDS],
    *[(v, "iban") for v in IBANS],
    *[(v, "national_id") for v in NATIONAL_IDS],
]

UNTOUCHED = [
    # dates and times
    "2026-12-03",
    "03.12.2026",
    "03.12.2026 10:30",
    "03/12/2026",
    "24/11/2026",
    "charged on 2026-11-24 at 10:30:00",
    "at 2026-11-24T10:30:00Z",
    # amounts
    "refund $1,250.00 or 40.00 USD or 19,99 €",
    "1.234,56 €",
    "90.00 USD",
    "amount 2500",
    "612 345 678 €",
    "€ 612.345.678",
    # vendor ids
    "charge ch_1001",
    "ch_3MmlLrLkdIwHu7ix0snN0B15",
    "00u1alicesVQijwX60h7",
    "00g4vpnkpL4NFJLRn0h7",
    "a01Dn00000qbYnTIAU",
    "00D000000000062EAA",
    # our own references
    "INV-1002",
    "PO-5002",
    "ticket 4821",
    "#12345",
    "INC-2001",
    "job 123e4567-e89b-12d3-a456-426614174000",
    "job 12345678-1234-1234-1234-123456789012",  # an all-digit uuid is not a card
    "job a1b20612-3456-4789-8012-abcdef012345",  # nor a phone inside a uuid
    "job:s1:r2",
    "version 1.2.3, 99.5%",
    "build 10.0.19045.2006",
    "10.20.30.40",
    # numbers that fail their checks
    "order 4242424242424241",  # 16 digits, fails Luhn
    "ref 1234567812345678",
    "4242 4242 4242 4241",
    "at 1764000000000 ms",  # epoch milliseconds pass Luhn, are no card
    "DE88 3704 0044 0532 0130 00",  # IBAN shape, bad checksum
    "GB83WEST12345698765432",
    "de88 3704 0044 0532 0130 00",
    "000-12-3456",  # SSN area 000
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",  # group 00
    "123-45-0000",  # serial 0000
    "DA 12 34 56 C",  # NI: D never a first letter
    "AO 12 34 56 C",  # O never a second letter
    "GB 12 34 56 C",  # refused prefix
    "AB 12 34 56 E",  # suffix A-D only
    "QQ 12 34 56 C",  # HMRC's specimen: Q is never a first letter
    "zero-padded 0000123456 and 0012345678",
    "epoch 1764000000",
    "123-456-7890",  # no North American area code starts with 1
    # placeholders are not redacted again
    "[email_1] [phone_2] [card_3] [iban_1] [national_id_12]",
    "[email] [phone] [card] [iban] [national_id]",
]


@pytest.mark.parametrize(("value", "kind"), POSITIVES)
def test_each_class_is_redacted(value: str, kind: str) -> None:
    assert redact(f"see {value} here") == f"see [{kind}] here"
    assert redact(value) == f"[{kind}]"


@pytest.mark.parametrize("text", UNTOUCHED)
def test_non_personal_data_is_untouched(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("write to alice@example.com please", "write to [email] please"),
        ("Alice.Adams+orders@mail.example.co.uk.", "[email]."),
        ("card 4111-1111-1111-1111.", "card [card]."),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [iban] ok"),
        ("call +44 20 7946 0958 today", "call [phone] today"),
        ("or +1 (555) 123-4567", "or [phone]"),
        ("US line (555) 123-4567", "US line [phone]"),
        ("call 020 7946 0958 24 hours a day", "call [phone] 24 hours a day"),
        ("2125550123@txt.example.net", "[email]"),  # an address, not a phone
        ("BE68 5390 0754 7034 GB82 WEST 1234 5698 7654 32", "[iban] [iban]"),
        ("DE88 3704 0044 0532 0130 00 020 7946 0958", "DE88 3704 0044 0532 0130 00 [phone]"),
        ("4242 4242 4242 4242 2027", "[card] 2027"),
        ("phones: 020 7946 0958, 07700 900123", "phones: [phone], [phone]"),
        ("a,020 7946 0958,b", "a,[phone],b"),
        ("tel:+442079460958", "tel:[phone]"),
    ],
)
def test_redaction_in_context(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_values_inside_serialized_json_are_found_and_the_json_stays_valid() -> None:
    body = {"note": "Hi,\nmail bob@example.org\ncall 020 7946 0958\n4242 4242 4242 4242"}

    out = redact(json.dumps(body))

    assert json.loads(out) == {"note": "Hi,\nmail [email]\ncall [phone]\n[card]"}


def test_several_kinds_in_one_text() -> None:
    text = "alice@example.com paid with 4242424242424242 on 2026-11-24, call +33 1 23 45 67 89"

    assert redact(text) == "[email] paid with [card] on 2026-11-24, call [phone]"


def test_redacting_twice_changes_nothing_more() -> None:
    text = " ".join(value for value, _ in POSITIVES)
    once = redact(text)
    ph = Placeholders()
    numbered = ph.redact(text)

    assert redact(once) == once
    assert Placeholders().redact(numbered) == numbered
    assert ph.redact(numbered) == numbered


def test_placeholders_map_every_value_back() -> None:
    ph = Placeholders()
    text = " / ".join(value for value, _ in POSITIVES)

    redacted = ph.redact(text)

    assert not any(value in redacted for value, _ in POSITIVES)
    assert ph.restore(redacted) == text
    assert ph.redact("again alice@example.com") == "again [email_1]"
    assert ph.restore("[email_99] is unknown") == "[email_99] is unknown"


_FILLER = st.sampled_from(
    ["", " ", ", ", "\n", " on 2026-12-03 ", " ticket 4821 ", " INV-1002 ", " $1,250.00 "]
)


@settings(max_examples=200, database=None, deadline=None)
@given(st.lists(st.tuples(_FILLER, st.sampled_from(POSITIVES)), min_size=1, max_size=8))
def test_round_trip_for_any_mix_of_values(pieces: list[tuple[str, tuple[str, str]]]) -> None:
    text = "".join(f"{filler} {value} " for filler, (value, _) in pieces)
    ph = Placeholders()

    redacted = ph.redact(text)

    assert ph.restore(redacted) == text
    for _, (value, kind) in pieces:
        assert value not in redacted
        assert f"[{kind}_" in redacted
    assert ph.redact(redacted) == redacted


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


def test_erasure_redaction_keeps_a_payload_parseable_and_its_structure() -> None:
    from app.privacy.erasure import _redacted

    payload = {
        "amount": 4242424242424242,  # a Luhn-valid number: a card, even as a JSON number
        "count": 3,
        "note": "write to carol@example.com",
        "nested": [{"phone": "+44 20 7946 0958"}, 1.5, None, True],
    }
    out = _redacted(payload)
    assert out == {
        "amount": "[card]",
        "count": 3,
        "note": "write to [email]",
        "nested": [{"phone": "[phone]"}, 1.5, None, True],
    }
