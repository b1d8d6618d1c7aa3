"""The reviewers' webhook messages: amount bands, both formats, and nothing personal in them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from app.human import notification_messages as m

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def notice(**change: object) -> m.Notice:
    base: dict[str, object] = {
        "notification_id": "0f6c2a4e-1111-2222-3333-444455556666",
        "kind": m.OPENED,
        "escalation_id": 42,
        "workflow": "support_refund",
        "reason": "approval_required",
        "amount_band": "under 100 USD",
        "age_seconds": 125,
        "deadline": NOW + timedelta(hours=3, minutes=20),
        "url": "https://opsgate.acme.com/ui/escalations/42",
    }
    base.update(change)
    return m.Notice(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "risk", "band"),
    [
        ({"amount": 9000, "currency": "usd"}, "irreversible", "under 100 USD"),
        ({"amount": 10000, "currency": "usd"}, None, "100-1,000 USD"),
        ({"amount": 100000, "currency": "eur"}, None, "100-1,000 EUR"),
        ({"amount": 100001, "currency": "usd"}, None, "over 1,000 USD"),
        # Zero-decimal currencies: the amount is already in whole yen
        ({"amount": 50, "currency": "jpy"}, None, "under 100 JPY"),
        ({"amount": 5000, "currency": "jpy"}, None, "over 1,000 JPY"),
        # No amount: the tool's risk class says how much is at stake
        ({"user_id": "00u1"}, "irreversible", "irreversible action"),
        ({"amount": "90", "currency": "usd"}, "write", "write action"),
        (None, None, "no action"),
    ],
)
def test_amount_bands(args: dict[str, object] | None, risk: str | None, band: str) -> None:
    assert m.amount_band(args, risk) == band


def test_durations_read_for_people() -> None:
    assert [m.duration(s) for s in (45, 720, 12000, 190000, -5)] == [
        "45s",
        "12m",
        "3h 20m",
        "2d 4h",
        "0s",
    ]


def test_the_json_body_has_exactly_the_reference_fields() -> None:
    body = m.json_body(notice(kind=m.REMINDER))

    assert body == {
        "notification_id": "0f6c2a4e-1111-2222-3333-444455556666",
        "kind": "reminder",
        "escalation_id": 42,
        "workflow": "support_refund",
        "reason": "approval_required",
        "amount_band": "under 100 USD",
        "age_seconds": 125,
        "deadline": "2026-12-04T15:20:00+00:00",
        "url": "https://opsgate.acme.com/ui/escalations/42",
    }
    assert m.body(notice(), "json", NOW)["kind"] == "opened"


def test_the_slack_body_has_a_fallback_text_section_blocks_and_the_link() -> None:
    body = m.slack_body(notice(), NOW)

    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("Escalation #42 needs a reviewer: support_refund")
    assert [b["type"] for b in body["blocks"]] == ["section", "section"]
    lead = body["blocks"][0]["text"]
    assert lead["type"] == "mrkdwn"
    assert (
        "<https://opsgate.acme.com/ui/escalations/42|Open escalation #42 in the console>"
        in (lead["text"])
    )
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*Amount*\nunder 100 USD" in fields and "*Deadline*\n2026-12-04 15:20 UTC" in fields
    assert len(fields) <= 10  # Slack's limit for a section's fields


def test_a_slack_reminder_says_how_long_is_left_and_without_a_console_url_has_no_link() -> None:
    body = m.slack_body(notice(kind=m.REMINDER, url=None), NOW)

    assert body["text"].startswith("Reminder: escalation #42 expires in 3h 20m")
    assert "<" not in body["blocks"][0]["text"]["text"]


def test_slack_control_characters_are_escaped() -> None:
    body = m.slack_body(notice(workflow="a<b>&c", url=None), NOW)

    assert "a&lt;b&gt;&amp;c" in body["blocks"][0]["text"]["text"]


def test_a_notice_carries_no_field_for_personal_data() -> None:
    # The message is built from these fields alone: adding one (requester, detail, evidence)
    # has to be a deliberate change to this test.
    assert [f for f in m.Notice.__dataclass_fields__] == [
        "notification_id",
        "kind",
        "escalation_id",
        "workflow",
        "reason",
        "amount_band",
        "age_seconds",
        "deadline",
        "url",
    ]
    text = json.dumps([m.slack_body(notice(), NOW), m.json_body(notice())])
    for personal in ("ch_", "@", "zendesk-user", "ticket"):
        assert personal not in text
