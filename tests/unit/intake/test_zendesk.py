"""app/intake/zendesk.py: signature verification and mapping deliveries to submissions.

Expected signatures are built here from Zendesk's documented algorithm
(base64(HMAC-SHA256(secret, timestamp + raw body))), never with `zendesk.sign`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.errors import InputError, Unauthorized
from app.intake import zendesk
from app.intake.submissions import Submission
from app.settings import Settings

NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
STAMP = "2026-11-24T10:00:00Z"
NEW, OLD = "new-secret-8f3a", "old-secret-19c2"
BODY = json.dumps(
    {"ticket_id": "4821", "requester_id": "101", "updated_at": STAMP, "workflow": "support_refund"}
).encode()
REFUND = frozenset({"refund"})


def documented_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's documented signature, computed independently of the code under test."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def signed(secret: str = NEW, timestamp: str = STAMP, body: bytes = BODY) -> dict[str, str]:
    return {
        "x-zendesk-webhook-signature": documented_signature(secret, timestamp, body),
        "x-zendesk-webhook-signature-timestamp": timestamp,
    }


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- verify -------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [NEW, OLD])
def test_signature_from_either_rotated_secret_is_accepted(secret: str) -> None:
    zendesk.verify([NEW, OLD], signed(secret), BODY, now=NOW)


def test_rotation_secrets_come_from_the_comma_separated_setting(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_ZENDESK_WEBHOOK_SECRET", f"{NEW}, {OLD}")
    secrets = Settings().zendesk_secrets()
    assert secrets == [NEW, OLD]
    zendesk.verify(secrets, signed(OLD), BODY, now=NOW)


def test_sign_matches_the_documented_algorithm() -> None:
    assert zendesk.sign(NEW, STAMP, BODY) == documented_signature(NEW, STAMP, BODY)


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(Unauthorized, match="does not match"):
        zendesk.verify([NEW, OLD], signed("someone-else"), BODY, now=NOW)


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1])
def test_body_tampered_by_one_byte_is_refused(position: int) -> None:
    headers = signed()
    tampered = bytearray(BODY)
    tampered[position] ^= 0x01
    with pytest.raises(Unauthorized, match="does not match"):
        zendesk.verify([NEW], headers, bytes(tampered), now=NOW)


def test_trailing_byte_added_to_body_is_refused() -> None:
    with pytest.raises(Unauthorized, match="does not match"):
        zendesk.verify([NEW], signed(), BODY + b" ", now=NOW)


def test_tampered_timestamp_is_refused() -> None:
    # Signed at 10:00:00, replayed with the timestamp moved by one second (still in the window).
    headers = signed()
    headers["x-zendesk-webhook-signature-timestamp"] = "2026-11-24T10:00:01Z"
    with pytest.raises(Unauthorized, match="does not match"):
        zendesk.verify([NEW], headers, BODY, now=NOW)


@pytest.mark.parametrize(
    "drop",
    [
        ["x-zendesk-webhook-signature"],
        ["x-zendesk-webhook-signature-timestamp"],
        ["x-zendesk-webhook-signature", "x-zendesk-webhook-signature-timestamp"],
    ],
)
def test_missing_headers_are_refused(drop: list[str]) -> None:
    headers = {k: v for k, v in signed().items() if k not in drop}
    with pytest.raises(Unauthorized, match="missing"):
        zendesk.verify([NEW], headers, BODY, now=NOW)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_signature_header_is_refused(value: str) -> None:
    headers = signed()
    headers["x-zendesk-webhook-signature"] = value
    with pytest.raises(Unauthorized):
        zendesk.verify([NEW], headers, BODY, now=NOW)


@pytest.mark.parametrize(
    "timestamp", ["yesterday", "1764064800", "24/11/2026 10:00:00", "2026-13-40T99:00:00Z", "now"]
)
def test_non_iso_timestamp_is_refused(timestamp: str) -> None:
    # Correctly signed over the bad timestamp: refused for the timestamp, not the signature.
    with pytest.raises(Unauthorized, match="ISO 8601"):
        zendesk.verify([NEW], signed(timestamp=timestamp), BODY, now=NOW)


@pytest.mark.parametrize(
    "offset", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)]
)
def test_timestamp_just_outside_the_window_is_refused(offset: timedelta) -> None:
    # Signed at NOW, checked 5m1s later (replay) or 5m1s earlier (timestamp in the future).
    with pytest.raises(Unauthorized, match="5 minutes"):
        zendesk.verify([NEW], signed(), BODY, now=NOW + offset)


@pytest.mark.parametrize("offset", [timedelta(minutes=5), -timedelta(minutes=5), timedelta(0)])
def test_timestamp_exactly_at_the_window_edge_is_accepted(offset: timedelta) -> None:
    zendesk.verify([NEW], signed(), BODY, now=NOW + offset)


def test_timestamp_with_explicit_offset_is_compared_in_utc() -> None:
    # 11:04:00+01:00 is 10:04:00Z: inside the window of NOW (10:00:00Z).
    stamp = "2026-11-24T11:04:00+01:00"
    zendesk.verify([NEW], signed(timestamp=stamp), BODY, now=NOW)
    with pytest.raises(Unauthorized, match="5 minutes"):
        zendesk.verify([NEW], signed(timestamp=stamp), BODY, now=NOW - timedelta(minutes=2))


def test_parse_timestamp_reads_the_documented_format() -> None:
    assert zendesk.parse_timestamp("2021-03-25T05:09:27Z") == datetime(
        2021, 3, 25, 5, 9, 27, tzinfo=UTC
    )


def test_verify_without_now_uses_the_clock() -> None:
    fresh = iso(datetime.now(UTC))
    zendesk.verify([NEW], signed(timestamp=fresh), BODY)
    stale = iso(datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(Unauthorized, match="5 minutes"):
        zendesk.verify([NEW], signed(timestamp=stale), BODY)


def test_no_secret_configured_is_refused() -> None:
    with pytest.raises(Unauthorized, match="OPSGATE_ZENDESK_WEBHOOK_SECRET"):
        zendesk.verify([], signed(), BODY, now=NOW)


@pytest.mark.parametrize("raw", [None, "", " , ,"])
def test_blank_secret_setting_configures_no_secret(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, raw: str | None
) -> None:
    if raw is None:
        monkeypatch.delenv("OPSGATE_ZENDESK_WEBHOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("OPSGATE_ZENDESK_WEBHOOK_SECRET", raw)
    secrets = Settings().zendesk_secrets()
    assert secrets == []
    # A body "signed" with an empty key must not pass either.
    with pytest.raises(Unauthorized):
        zendesk.verify(secrets, signed(secret=""), BODY, now=NOW)


def test_hex_encoded_signature_is_refused() -> None:
    hex_digest = hmac.new(NEW.encode(), STAMP.encode() + BODY, hashlib.sha256).hexdigest()
    headers = signed()
    headers["x-zendesk-webhook-signature"] = hex_digest
    with pytest.raises(Unauthorized, match="does not match"):
        zendesk.verify([NEW], headers, BODY, now=NOW)


# --- to_submission: event subscriptions ---------------------------------------------------


def event(**overrides: Any) -> dict[str, Any]:
    """A ticket.created event as Zendesk sends it; detail keys overridden via detail=..."""
    payload: dict[str, Any] = {
        "type": "zen:event-type:ticket.created",
        "account_id": 123,
        "id": "01HAB8ZQ2T6ZK5Y1H3P4QW9XYZ",
        "time": "2026-11-24T10:00:00Z",
        "zendesk_event_version": "2022-11-06",
        "subject": "zen:ticket:4821",
        "detail": {
            "id": "4821",
            "requester_id": "101",
            "tags": ["refund"],
            "status": "NEW",
            "subject": "Please refund my order",
        },
        "event": {"meta": {"sequence": {"id": "x", "position": 1, "total": 1}}},
    }
    payload.update(overrides)
    return payload


def test_ticket_created_event_with_refund_tag_becomes_a_refund_submission() -> None:
    sub = zendesk.to_submission(event(), {}, REFUND)

    assert isinstance(sub, Submission)
    assert sub.workflow == "support_refund"
    assert sub.source == "zendesk"
    assert sub.external_id == "4821"
    assert sub.delivery_id == "event:01HAB8ZQ2T6ZK5Y1H3P4QW9XYZ"
    assert sub.input == {"ticket_id": 4821}
    assert sub.requester == "zendesk-user:101"


@pytest.mark.parametrize(
    "event_type",
    ["zen:event-type:ticket.comment_added", "zen:event-type:ticket.tags_changed"],
)
def test_other_ticket_events_also_start_work(event_type: str) -> None:
    sub = zendesk.to_submission(event(type=event_type), {}, REFUND)
    assert isinstance(sub, Submission) and sub.input == {"ticket_id": 4821}


def test_ticket_id_comes_from_subject_when_detail_has_no_id() -> None:
    payload = event(subject="zen:ticket:7310")
    del payload["detail"]["id"]

    sub = zendesk.to_submission(payload, {}, REFUND)

    assert isinstance(sub, Submission)
    assert (sub.external_id, sub.input) == ("7310", {"ticket_id": 7310})


def test_ticket_without_a_wanted_tag_is_ignored_with_a_reason() -> None:
    payload = event()
    payload["detail"]["tags"] = ["billing", "vip"]

    reason = zendesk.to_submission(payload, {}, REFUND)

    assert isinstance(reason, str)
    assert "4821" in reason and "refund" in reason


def test_tags_match_case_insensitively() -> None:
    payload = event()
    payload["detail"]["tags"] = ["Refund"]
    assert isinstance(zendesk.to_submission(payload, {}, REFUND), Submission)


def test_empty_wanted_tag_set_accepts_every_ticket() -> None:
    payload = event()
    payload["detail"]["tags"] = []
    assert isinstance(zendesk.to_submission(payload, {}, frozenset()), Submission)


@pytest.mark.parametrize("tags", ["missing", None, "billing"])
def test_ticket_without_a_tags_list_is_not_accepted_when_tags_are_wanted(tags: Any) -> None:
    payload = event()
    if tags == "missing":
        del payload["detail"]["tags"]
    else:
        payload["detail"]["tags"] = tags
    result = zendesk.to_submission(payload, {}, REFUND)
    assert not isinstance(result, Submission)


@pytest.mark.parametrize(
    "event_type",
    ["zen:event-type:user.created", "zen:event-type:organization.created", "something.else"],
)
def test_non_ticket_events_are_ignored_with_a_reason(event_type: str) -> None:
    result = zendesk.to_submission(event(type=event_type), {}, REFUND)
    assert isinstance(result, str) and event_type in result


@pytest.mark.parametrize(
    "change",
    [
        {"id": None},
        {"id": ""},
        {"id": 42},
        {"type": 7},
        {"detail": None},
        {"detail": ["4821"]},
        {"detail": "4821"},
    ],
)
def test_malformed_event_is_an_input_error(change: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        zendesk.to_submission(event(**change), {}, REFUND)


def test_requester_missing_is_recorded_as_unknown() -> None:
    payload = event()
    del payload["detail"]["requester_id"]
    sub = zendesk.to_submission(payload, {}, REFUND)
    assert isinstance(sub, Submission) and sub.requester == "unknown"


# --- to_submission: trigger bodies --------------------------------------------------------


def trigger(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ticket_id": "4821",
        "requester_id": "101",
        "updated_at": "2026-11-24T10:00:00Z",
        "workflow": "support_refund",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def test_trigger_body_takes_its_delivery_id_from_updated_at() -> None:
    sub = zendesk.to_submission(trigger(), {}, REFUND)

    assert isinstance(sub, Submission)
    assert sub.workflow == "support_refund" and sub.source == "zendesk"
    assert sub.external_id == "4821"
    assert sub.input == {"ticket_id": 4821}
    assert sub.requester == "zendesk-user:101"
    assert sub.delivery_id is not None and "2026-11-24T10:00:00Z" in sub.delivery_id
    # Another update of the same ticket is another delivery; a retry is the same.
    later = zendesk.to_submission(trigger(updated_at="2026-11-24T11:30:00Z"), {}, REFUND)
    again = zendesk.to_submission(trigger(), {}, REFUND)
    assert isinstance(later, Submission) and isinstance(again, Submission)
    assert later.delivery_id != sub.delivery_id
    assert again.delivery_id == sub.delivery_id


def test_trigger_ignores_the_tag_filter() -> None:
    # The admin's trigger conditions decide which tickets are sent.
    assert isinstance(zendesk.to_submission(trigger(), {}, frozenset({"other"})), Submission)


def test_trigger_without_updated_at_uses_the_invocation_id() -> None:
    headers = {"x-zendesk-webhook-invocation-id": "8350205582"}

    sub = zendesk.to_submission(trigger(updated_at=None), headers, REFUND)

    assert isinstance(sub, Submission)
    assert sub.delivery_id is not None and "8350205582" in sub.delivery_id


def test_trigger_with_neither_updated_at_nor_invocation_id_is_an_input_error() -> None:
    with pytest.raises(InputError, match="updated_at"):
        zendesk.to_submission(trigger(updated_at=None), {}, REFUND)
    with pytest.raises(InputError, match="updated_at"):
        zendesk.to_submission(trigger(updated_at="  "), {}, REFUND)


def test_trigger_for_another_workflow_is_an_input_error() -> None:
    with pytest.raises(InputError, match="invoice_exception"):
        zendesk.to_submission(trigger(workflow="invoice_exception"), {}, REFUND)


def test_trigger_without_workflow_defaults_to_support_refund() -> None:
    sub = zendesk.to_submission(trigger(workflow=None), {}, REFUND)
    assert isinstance(sub, Submission) and sub.workflow == "support_refund"


@pytest.mark.parametrize(
    "ticket_id", ["abc", "", "0", 0, "-5", -5, "12.5", 12.5, None, True, [4821], {"id": 1}, "1e3"]
)
def test_bad_ticket_ids_are_input_errors(ticket_id: Any) -> None:
    with pytest.raises(InputError):
        zendesk.to_submission(trigger(ticket_id=ticket_id) | {"ticket_id": ticket_id}, {}, REFUND)
    payload = event()
    payload["detail"]["id"] = ticket_id
    if ticket_id is None:
        payload["subject"] = "zen:user:5"  # no ticket id anywhere
    with pytest.raises(InputError):
        zendesk.to_submission(payload, {}, REFUND)


def test_numeric_ticket_id_is_accepted_as_a_number() -> None:
    sub = zendesk.to_submission(trigger(ticket_id=4821), {}, REFUND)
    assert isinstance(sub, Submission) and sub.input == {"ticket_id": 4821}


@pytest.mark.parametrize("payload", [[], ["ticket_id"], "4821", 4821, None, True, 1.5])
def test_non_object_body_is_an_input_error(payload: Any) -> None:
    with pytest.raises(InputError, match="JSON object"):
        zendesk.to_submission(payload, {}, REFUND)


def test_object_of_neither_shape_is_an_input_error() -> None:
    with pytest.raises(InputError):
        zendesk.to_submission({"hello": "world"}, {}, REFUND)


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        (lambda: trigger(ticket_id="9" * 300), {}),
        (lambda: trigger(updated_at="x" * 300), {}),
        (lambda: trigger(requester_id="r" * 300), {}),
        (lambda: trigger(updated_at=None), {"x-zendesk-webhook-invocation-id": "i" * 300}),
        (lambda: event(id="e" * 300), {}),
        (lambda: trigger(updated_at="\ud800"), {}),
        (lambda: event(id="e\udfff"), {}),
    ],
    ids=["huge-ticket-id", "long-updated-at", "long-requester",
         "long-invocation", "long-event-id", "lone-surrogate", "surrogate-event-id"],
)  # fmt: skip
def test_oversized_fields_are_input_errors(payload: Any, headers: dict[str, str]) -> None:
    # Found by the intake fuzzing as pydantic ValidationError (HTTP 500); fixed since.
    with pytest.raises(InputError):
        zendesk.to_submission(payload(), headers, REFUND)
