"""Telling reviewers on a webhook that an escalation opened, and again before its deadline.

A notification is a row, one per escalation and kind, written in the transaction that makes
it due (the escalation's own, or the beat's for a reminder), so a crash loses none. Delivery
runs after commit: right away from the human-queue task, and from beat as the safety net. A
run claims a row with a conditional UPDATE (taken only when unclaimed or its claim ran out),
so two processes never post the same row at once; a crash between the POST and marking the
row sent makes the next run post it again, so delivery is at least once, and every message
carries its `notification_id` (body and `X-Opsgate-Notification-Id`) for receivers to dedupe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.clients import per_process
from app.core.db import session_scope
from app.errors import PermanentError
from app.human import notification_messages as messages
from app.models import (
    Escalation,
    EscalationStatus,
    Job,
    Notification,
    NotificationStatus,
    PlanStep,
    as_utc,
    utcnow,
)
from app.settings import Settings, get_settings
from tools.catalog import get_tool

log = structlog.get_logger(__name__)

# Posts one run makes; with the lease below, a run stays inside Celery's task time limit.
_BATCH = 20
# The longest wait between two attempts of one notification.
_MAX_BACKOFF = 3600.0


def enabled(settings: Settings | None = None) -> bool:
    """Whether a webhook is configured (without one, no notification is created)."""
    return (settings or get_settings()).notify_webhook_url is not None


def on_opened(session: Session, esc: Escalation) -> Notification | None:
    """Queue the `opened` message in the escalation's own transaction (the caller commits)."""
    if not enabled():
        return None
    note = Notification(escalation=esc, kind=messages.OPENED)
    session.add(note)
    return note


def queue_reminders(session: Session, now: datetime | None = None) -> int:
    """Queue a reminder for each open escalation whose deadline is inside the reminder window
    (the caller commits); an escalation gets one reminder at most."""
    settings = get_settings()
    if not enabled(settings):
        return 0
    now = now or utcnow()
    horizon = now + timedelta(seconds=settings.notify_reminder_before)
    reminded = select(Notification.escalation_id).where(Notification.kind == messages.REMINDER)
    due = session.scalars(
        select(Escalation.id)
        .where(
            Escalation.status == EscalationStatus.OPEN,
            Escalation.deadline.is_not(None),
            Escalation.deadline <= horizon,
            Escalation.deadline > now,
            Escalation.id.not_in(reminded),
        )
        .limit(500)
    ).all()
    queued = 0
    for esc_id in due:
        try:
            with session.begin_nested():
                session.add(Notification(escalation_id=esc_id, kind=messages.REMINDER))
        except IntegrityError:
            continue  # another beat process queued it first: the unique key keeps one
        queued += 1
    return queued


@dataclass(frozen=True)
class Outgoing:
    """A claimed notification and the body to post, built inside the claiming transaction."""

    id: int
    notification_id: str
    kind: str
    attempts: int
    body: dict[str, Any]


def _step_args(session: Session, esc: Escalation, job: Job) -> tuple[dict[str, Any], str | None]:
    """The arguments and risk class of the step the escalation is about (if it names one)."""
    query = select(PlanStep).where(PlanStep.job_id == job.id)
    step_id = esc.evidence.get("step_id") if isinstance(esc.evidence, dict) else None
    if step_id:
        query = query.where(PlanStep.step_id == step_id)
    else:
        query = query.where(PlanStep.position == job.current_step)
    step = session.scalars(query.order_by(PlanStep.revision.desc())).first()
    if step is None:
        return {}, None
    try:
        risk = str(get_tool(step.tool).risk)
    except PermanentError:
        risk = None  # a tool no longer in the catalog: no risk class to show
    return dict(step.args or {}), risk


def notice_for(session: Session, note: Notification, now: datetime) -> messages.Notice:
    """The reference-only facts of a notification, read from its escalation and job."""
    settings = get_settings()
    esc = note.escalation
    job = session.get(Job, esc.job_id)
    args, risk = _step_args(session, esc, job) if job is not None else ({}, None)
    created = as_utc(esc.created_at) or now
    url = (
        f"{settings.console_url.rstrip('/')}/ui/escalations/{esc.id}"
        if settings.console_url
        else None
    )
    return messages.Notice(
        notification_id=note.notification_id,
        kind=note.kind,
        escalation_id=esc.id,
        workflow=job.workflow if job is not None else "unknown",
        reason=esc.reason,
        amount_band=messages.amount_band(args, risk),
        age_seconds=int((now - created).total_seconds()),
        deadline=as_utc(esc.deadline),
        url=url,
    )


def claim(session: Session, *, job_id: str | None = None, limit: int = _BATCH) -> list[Outgoing]:
    """Claim due notifications (all, or one job's) and build their bodies (the caller commits).

    The UPDATE's condition is checked again after a concurrent claimer commits (PostgreSQL
    re-evaluates it on the locked row; SQLite writes one at a time), so a row goes to one run.
    """
    settings = get_settings()
    now = utcnow()
    # The run posts its rows one after the other: the lease covers the last one's POST (each
    # may take the timeout for connecting and again for reading), so no other run takes a
    # row this one is still about to send.
    lease = now + timedelta(seconds=limit * settings.http_timeout_seconds * 2 + 60)
    due = (
        Notification.status == NotificationStatus.PENDING,
        (Notification.next_attempt_at.is_(None)) | (Notification.next_attempt_at <= now),
        (Notification.claimed_until.is_(None)) | (Notification.claimed_until < now),
    )
    query = select(Notification.id).where(*due).order_by(Notification.id).limit(limit)
    if job_id is not None:
        query = query.join(Escalation).where(Escalation.job_id == job_id)
    claimed: list[Outgoing] = []
    for note_id in session.scalars(query).all():
        taken = session.execute(
            update(Notification)
            .where(Notification.id == note_id, *due)
            .values(claimed_until=lease, attempts=Notification.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            continue
        note = session.get(Notification, note_id, populate_existing=True)
        assert note is not None
        if note.escalation.status != EscalationStatus.OPEN:
            # Decided or expired before it went out: nobody needs to act any more.
            note.status = NotificationStatus.SKIPPED
            note.claimed_until = None
            continue
        body = messages.body(notice_for(session, note, now), settings.notify_format, now)
        claimed.append(Outgoing(note.id, note.notification_id, note.kind, note.attempts, body))
    return claimed


def _client() -> httpx.Client:
    return per_process(
        "notify-webhook",
        lambda: httpx.Client(timeout=get_settings().http_timeout_seconds, follow_redirects=False),
    )


def webhook_host(settings: Settings | None = None) -> str | None:
    """The webhook's host, the only part of its URL that may be shown (the rest is secret)."""
    url = (settings or get_settings()).notify_webhook_url
    return urlsplit(url.get_secret_value()).hostname if url is not None else None


def post(out: Outgoing) -> str | None:
    """POST one message; returns None when the receiver took it, else why not (no URL in it)."""
    url = get_settings().notify_webhook_url
    if url is None:
        return "no webhook configured"
    try:
        response = _client().post(
            url.get_secret_value(),
            json=out.body,
            headers={"X-Opsgate-Notification-Id": out.notification_id},
        )
    except httpx.HTTPError as exc:
        # httpx's messages can quote the URL, which carries the webhook's token.
        return f"{exc.__class__.__name__} posting to {webhook_host()}"
    if response.is_success:
        return None
    return f"HTTP {response.status_code} from {webhook_host()}"


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones (doubling, jittered)."""
    base = get_settings().notify_backoff * 2.0 ** max(0, attempts - 1)
    return min(base, _MAX_BACKOFF) * random.uniform(1.0, 1.25)


def _record(out: Outgoing, error: str | None) -> str:
    """Store one attempt's outcome; returns the notification's status after it."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as session:
        if error is None:
            values: dict[str, Any] = {"status": NotificationStatus.SENT, "sent_at": now}
            outcome = NotificationStatus.SENT
        elif out.attempts >= settings.notify_max_attempts:
            values = {"status": NotificationStatus.FAILED, "last_error": error}
            outcome = NotificationStatus.FAILED
        else:
            next_at = now + timedelta(seconds=backoff(out.attempts))
            values = {"last_error": error, "next_attempt_at": next_at}
            outcome = NotificationStatus.PENDING
        session.execute(
            update(Notification)
            .where(Notification.id == out.id, Notification.status == NotificationStatus.PENDING)
            .values(claimed_until=None, **values)
        )
        session.commit()
    if outcome == NotificationStatus.FAILED:
        log.error(
            "notification.gave_up",
            notification_id=out.notification_id,
            kind=out.kind,
            attempts=out.attempts,
            error=error,
        )
    elif error is not None:
        log.warning(
            "notification.retry",
            notification_id=out.notification_id,
            kind=out.kind,
            attempts=out.attempts,
            error=error,
        )
    return outcome


def deliver(job_id: str | None = None) -> dict[str, int]:
    """Post what is due (all, or one job's), each claimed row once; returns counts by outcome."""
    counts = {
        NotificationStatus.SENT: 0,
        NotificationStatus.PENDING: 0,
        NotificationStatus.FAILED: 0,
    }
    if not enabled():
        return counts
    with session_scope() as session:
        claimed = claim(session, job_id=job_id)
        session.commit()
    # The POSTs run with no transaction open: a slow receiver holds no database locks.
    for out in claimed:
        counts[_record(out, post(out))] += 1
    return counts


def run_due() -> dict[str, int]:
    """One beat pass: queue the reminders that fell due, then deliver what is pending."""
    if not enabled():
        return {}
    with session_scope() as session:
        queued = queue_reminders(session)
        session.commit()
    return {"reminders_queued": queued, **deliver()}
