"""Personal data: where it lives, how long it stays, and erasing a data subject.

The audit chains hold references and hashes only (app/audit/chain.py); the personal data they
point at lives in the operational stores below, which can be purged and scrubbed without
touching a chained row, so every chain still verifies after an erasure.

| store | personal data |
|---|---|
| jobs.requester, jobs.input | who asked, and about whom (logins, e-mail addresses) |
| deliveries.body, .headers | the raw webhook as received (credentials already removed) |
| tool_calls.request, .response | what the systems answered (tickets, users, records) |
| model_calls.request, .response | the (redacted) prompts and answers |
| escalations.detail, .evidence | what a reviewer sees |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, or_, select
from sqlalchemy.orm import Session

from app.audit import chain as audit
from app.core.redaction import redact
from app.jobs import lifecycle
from app.models import Delivery, Escalation, Job, ModelCall, ToolCall, utcnow


def scrubbed(value: Any) -> dict[str, Any]:
    """What replaces a stored payload: a marker and the hash of what was there."""
    return {"erased": True, "sha256": audit.sha256_hex(audit.canonical_json(value))}


def _redacted(value: Any) -> Any:
    """Strings with personal data patterns replaced, structure kept."""
    # Each string is redacted on its own (keys too): redacting the serialized JSON could turn
    # a number that passes Luhn into "[card]" and leave text that no longer parses. A number
    # is data, not text: one that is a card number is turned into a redacted string.
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        return value if redact(text) == text else redact(text)
    if value is None or isinstance(value, (bool, float)):
        return value
    return redact(str(value))


@dataclass
class Scrubbed:
    """How many rows of each store were scrubbed."""

    jobs: int = 0
    deliveries: int = 0
    tool_calls: int = 0
    model_calls: int = 0
    escalations: int = 0
    job_ids: list[str] = field(default_factory=list)
    # Jobs not finished (running, parked, waiting for a reviewer): their data is needed to
    # finish; erase again once they settle (or cancel them first).
    skipped_active: list[str] = field(default_factory=list)

    def total(self) -> int:
        """Rows changed in all."""
        return self.jobs + self.deliveries + self.tool_calls + self.model_calls + self.escalations


def _scrub_jobs(session: Session, found: list[Job], result: Scrubbed, subject: str | None) -> None:
    for job in found:
        if subject is None or job.requester == subject:
            job.requester = f"erased:{audit.reference(job.requester)}"
        job.input = _redacted(job.input) if subject is None else _without(job.input, subject)
        result.jobs += 1
        result.job_ids.append(job.id)
        job_ids = [job.id]
        for call in session.scalars(select(ToolCall).where(ToolCall.job_id.in_(job_ids))):
            if not (call.request or {}).get("erased"):
                call.request, call.response = scrubbed(call.request), scrubbed(call.response)
                result.tool_calls += 1
        for mc in session.scalars(select(ModelCall).where(ModelCall.job_id.in_(job_ids))):
            if not (mc.request or {}).get("erased"):
                mc.request, mc.response = scrubbed(mc.request), scrubbed(mc.response)
                result.model_calls += 1
        for esc in session.scalars(select(Escalation).where(Escalation.job_id.in_(job_ids))):
            esc.detail = redact(esc.detail or "")
            esc.evidence = _redacted(esc.evidence or {})
            result.escalations += 1


def _without(value: Any, subject: str) -> Any:
    text = json.dumps(value, default=str).replace(subject, "[erased]")
    return _redacted(json.loads(text))


def _scrub_deliveries(session: Session, rows: list[Delivery], result: Scrubbed) -> None:
    for row in rows:
        if row.body == "":
            continue
        row.body, row.headers = "", {"erased": True}
        result.deliveries += 1


def erase_subject(session: Session, subject: str, *, actor: str) -> Scrubbed:
    """Erase a data subject (a login, an e-mail address, a requester reference) from every
    store, whatever the age of the rows; each affected job's chain records the erasure by
    reference (the caller commits)."""
    subject = subject.strip()
    if len(subject) < 3:
        raise ValueError("a subject to erase needs at least 3 characters")
    pattern = f"%{subject}%"
    found = list(
        session.scalars(
            select(Job).where(
                or_(
                    Job.requester == subject,
                    cast(Job.input, String).like(pattern),
                    Job.id.in_(
                        select(ToolCall.job_id).where(
                            or_(
                                cast(ToolCall.request, String).like(pattern),
                                cast(ToolCall.response, String).like(pattern),
                            )
                        )
                    ),
                )
            )
        )
    )
    result = Scrubbed()
    settled = [j for j in found if j.status in lifecycle.TERMINAL]
    result.skipped_active = [j.id for j in found if j.status not in lifecycle.TERMINAL]
    _scrub_jobs(session, settled, result, subject)
    deliveries = {
        d.id: d for d in session.scalars(select(Delivery).where(Delivery.body.like(pattern)))
    }
    for job in settled:
        for d in session.scalars(
            select(Delivery).where(cast(Delivery.job_ids, String).like(f"%{job.id}%"))
        ):
            deliveries[d.id] = d
    _scrub_deliveries(session, list(deliveries.values()), result)
    ref = audit.reference(subject)
    for job_id in result.job_ids:
        audit.append(session, job_id, "erasure", actor, {"subject_ref": ref, "scope": "subject"})
    audit.append(
        session,
        audit.FLEET,
        "erasure",
        actor,
        {"subject_ref": ref, "jobs": len(result.job_ids), "rows": result.total()},
    )
    return result


def purge_expired(session: Session, *, older_than: timedelta, actor: str) -> Scrubbed:
    """Scrub the personal data of settled jobs last updated before the retention window, and
    of deliveries received before it (the caller commits)."""
    cutoff: datetime = utcnow() - older_than
    found = list(
        session.scalars(
            select(Job).where(
                Job.updated_at < cutoff,
                Job.status.in_(lifecycle.TERMINAL),
                ~Job.requester.like("erased:%"),
            )
        )
    )
    result = Scrubbed()
    _scrub_jobs(session, found, result, None)
    old = list(session.scalars(select(Delivery).where(Delivery.received_at < cutoff)))
    _scrub_deliveries(session, old, result)
    if result.total():
        audit.append(
            session,
            audit.FLEET,
            "retention_purge",
            actor,
            {"cutoff": cutoff.isoformat(), "jobs": len(result.job_ids), "rows": result.total()},
        )
    return result
