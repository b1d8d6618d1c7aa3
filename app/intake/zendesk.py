"""Zendesk webhooks: signature verification and mapping both payload shapes to a job.

Zendesk signs `timestamp + raw body` with HMAC-SHA256 and sends the base64 digest in
`X-Zendesk-Webhook-Signature`, the timestamp (ISO 8601, e.g. `2021-03-25T05:09:27Z`) in
`X-Zendesk-Webhook-Signature-Timestamp`. No maintained library verifies this, so it is here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from app.errors import InputError, Unauthorized
from app.intake.submissions import Submission, describe
from app.workflows import registry

SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
INVOCATION = "x-zendesk-webhook-invocation-id"
REPLAY_WINDOW = timedelta(minutes=5)
TICKET_EVENTS = frozenset(
    {
        "zen:event-type:ticket.created",
        "zen:event-type:ticket.comment_added",
        "zen:event-type:ticket.tags_changed",
    }
)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature Zendesk sends for this timestamp and body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def parse_timestamp(value: str) -> datetime:
    """Zendesk's ISO 8601 timestamp; Unauthorized when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise Unauthorized("signature timestamp is not an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def verify(
    secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: datetime | None = None
) -> None:
    """Raise Unauthorized unless one configured secret signed this body recently."""
    if not secrets:
        raise Unauthorized(
            "no Zendesk webhook secret is configured (OPSGATE_ZENDESK_WEBHOOK_SECRET)"
        )
    signature, timestamp = headers.get(SIGNATURE), headers.get(TIMESTAMP)
    if not signature or not timestamp:
        raise Unauthorized(f"missing {SIGNATURE} or {TIMESTAMP} header")
    skew = abs((now or datetime.now(UTC)) - parse_timestamp(timestamp))
    if skew > REPLAY_WINDOW:
        raise Unauthorized("signature timestamp is more than 5 minutes from now")
    given = signature.strip().encode()
    # Compare against every secret (rotation) without stopping early.
    matches = [hmac.compare_digest(sign(s, timestamp, body).encode(), given) for s in secrets]
    if not any(matches):
        raise Unauthorized("signature does not match")


def _ticket_id(value: Any) -> int:
    try:
        ticket_id = int(str(value).strip())
    except ValueError:
        raise InputError(f"ticket id {str(value)[:40]!r} is not a number") from None
    if not 0 < ticket_id < 10**15:
        raise InputError(f"ticket id {str(value)[:40]!r} is not a ticket id")
    return ticket_id


def _from_event(payload: dict[str, Any], tags_wanted: frozenset[str]) -> Submission | str:
    event_type, event_id = payload.get("type"), payload.get("id")
    if not isinstance(event_type, str) or not isinstance(event_id, str) or not event_id:
        raise InputError("event payload needs string `type` and `id`")
    if event_type not in TICKET_EVENTS:
        shown = event_type[:80].encode("utf-8", "replace").decode("utf-8")
        return f"event type {shown} does not start work"
    detail = payload.get("detail")
    if not isinstance(detail, dict):
        raise InputError("event payload needs a `detail` object")
    subject = payload.get("subject")
    raw_id = detail.get("id")
    if raw_id is None and isinstance(subject, str) and subject.startswith("zen:ticket:"):
        raw_id = subject.rsplit(":", 1)[1]
    ticket_id = _ticket_id(raw_id)
    tags = detail.get("tags")
    have = {str(t).lower() for t in tags} if isinstance(tags, list) else set()
    if tags_wanted and not tags_wanted & have:  # no tags, or not a list: fail closed
        return f"ticket {ticket_id} has none of the tags {sorted(tags_wanted)}"
    requester = detail.get("requester_id")
    return Submission(
        workflow=registry.zendesk_default(),
        source="zendesk",
        external_id=str(ticket_id),
        delivery_id=f"event:{event_id}",
        input={"ticket_id": ticket_id},
        requester=f"zendesk-user:{requester}" if requester else "unknown",
    )


def _from_trigger(payload: dict[str, Any], invocation: str | None) -> Submission:
    ticket_id = _ticket_id(payload.get("ticket_id"))
    workflow = payload.get("workflow", registry.zendesk_default())
    if not isinstance(workflow, str) or not registry.from_zendesk(workflow):
        raise InputError(f"workflow {workflow!r} cannot start from a Zendesk trigger")
    updated = payload.get("updated_at")
    if isinstance(updated, str) and updated.strip():
        delivery = f"trigger:{ticket_id}:{updated.strip()}"
    elif invocation:
        delivery = f"invocation:{invocation}"
    else:
        raise InputError(
            "trigger payload needs `updated_at` ({{ticket.updated_at_with_timestamp}}) "
            "to tell a retry from a new request"
        )
    requester = payload.get("requester_id")
    return Submission(
        workflow=workflow,
        source="zendesk",
        external_id=str(ticket_id),
        delivery_id=delivery,
        input={"ticket_id": ticket_id},
        requester=f"zendesk-user:{requester}" if requester else "unknown",
    )


def to_submission(
    payload: Any, headers: Mapping[str, str], tags_wanted: frozenset[str]
) -> Submission | str:
    """The job a delivery asks for, or a string saying why it starts no work."""
    if not isinstance(payload, dict):
        raise InputError("the body must be a JSON object")
    try:
        if "type" in payload and "detail" in payload:
            return _from_event(payload, tags_wanted)
        if "ticket_id" in payload:
            return _from_trigger(payload, headers.get(INVOCATION))
    except ValidationError as exc:
        # Ids and names past their limits (or not valid text) are the sender's mistake.
        raise InputError(f"unusable Zendesk payload: {describe(exc)}") from exc
    raise InputError("not a Zendesk event (type, id, detail) or opsgate trigger body (ticket_id)")
