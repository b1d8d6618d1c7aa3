"""`--since` values: an ISO date or date-time (UTC unless it says otherwise), or a span back
from now such as 90m, 24h, 7d, 2w."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.errors import InputError

_SPAN = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """The moment `value` names, as an aware UTC datetime; InputError when it names none."""
    now = now or datetime.now(UTC)
    span = _SPAN.match(value)
    if span:
        return now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            f"--since {value!r}: give an ISO date or date-time (2026-11-01, "
            "2026-11-01T08:00) or a span back from now (90m, 24h, 7d, 2w)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise InputError(f"--since {value!r} is in the future")
    return moment.astimezone(UTC)
