"""The reviewers' webhook messages: reference-only bodies in Slack or generic JSON format.

A message names the escalation (id, workflow, reason code, an amount band, age, deadline, a
link to the console) and nothing else: never the requester, the ticket text, customer or
charge ids, the detail text or the evidence, because a chat channel is not a place for
personal data and the reviewer reads the item in the console anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.core.money import format_minor, to_minor

OPENED = "opened"
REMINDER = "reminder"
KINDS = (OPENED, REMINDER)

# Band edges in major units: coarse enough that an amount is not identifying.
_BAND_EDGES = (100, 1000)


@dataclass(frozen=True)
class Notice:
    """The reference-only facts of one notification."""

    notification_id: str
    kind: str
    escalation_id: int
    workflow: str
    reason: str
    amount_band: str
    age_seconds: int
    deadline: datetime | None
    url: str | None


def _edge(major: int, currency: str) -> str:
    # format_minor gives "1000.00 USD"; a band edge reads better as "1,000".
    whole = format_minor(to_minor(str(major), currency), currency).split()[0]
    return f"{int(float(whole)):,}"


def amount_band(args: dict[str, Any] | None, risk: str | None) -> str:
    """A coarse band for the step's amount (minor units + currency), else its risk class."""
    amount = (args or {}).get("amount")
    currency = (args or {}).get("currency")
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str):
        code = currency.upper()
        low, high = (to_minor(str(edge), currency) for edge in _BAND_EDGES)
        if amount < low:
            return f"under {_edge(_BAND_EDGES[0], currency)} {code}"
        if amount <= high:
            return f"{_edge(_BAND_EDGES[0], currency)}-{_edge(_BAND_EDGES[1], currency)} {code}"
        return f"over {_edge(_BAND_EDGES[1], currency)} {code}"
    return f"{risk} action" if risk else "no action"


def duration(seconds: float) -> str:
    """Seconds for people: 45s, 12m, 3h 20m, 2d 4h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def json_body(notice: Notice) -> dict[str, Any]:
    """The generic JSON body."""
    return {
        "notification_id": notice.notification_id,
        "kind": notice.kind,
        "escalation_id": notice.escalation_id,
        "workflow": notice.workflow,
        "reason": notice.reason,
        "amount_band": notice.amount_band,
        "age_seconds": notice.age_seconds,
        "deadline": _when(notice.deadline),
        "url": notice.url,
    }


def _escape(text: str) -> str:
    # Slack's mrkdwn treats &, < and > as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _headline(notice: Notice, now: datetime) -> str:
    if notice.kind == REMINDER and notice.deadline is not None:
        left = duration((notice.deadline - now).total_seconds())
        return f"Reminder: escalation #{notice.escalation_id} expires in {left}"
    return f"Escalation #{notice.escalation_id} needs a reviewer"


def slack_body(notice: Notice, now: datetime) -> dict[str, Any]:
    """A Slack incoming-webhook body: `text` (the notification fallback) and section blocks."""
    headline = _headline(notice, now)
    summary = f"{notice.workflow}, {notice.reason}, {notice.amount_band}"
    deadline = (
        notice.deadline.strftime("%Y-%m-%d %H:%M UTC") if notice.deadline is not None else "none"
    )
    fields = [
        ("Workflow", notice.workflow),
        ("Reason", notice.reason),
        ("Amount", notice.amount_band),
        ("Waiting", duration(notice.age_seconds)),
        ("Deadline", deadline),
    ]
    lead = f"*{_escape(headline)}*\n{_escape(summary)}"
    if notice.url is not None:
        lead += f"\n<{notice.url}|Open escalation #{notice.escalation_id} in the console>"
    return {
        "text": f"{headline}: {summary}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": lead}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"}
                    for name, value in fields
                ],
            },
        ],
    }


def body(notice: Notice, fmt: Literal["slack", "json"], now: datetime) -> dict[str, Any]:
    """The body to post in the configured format."""
    return slack_body(notice, now) if fmt == "slack" else json_body(notice)
