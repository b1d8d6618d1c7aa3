"""Reviewer notifications: an escalation of a real job reaches a real webhook receiver once,
with no personal data; reminders before the deadline; retries; one sender among several."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.core.db import session_scope
from app.human import notifications
from app.models import Escalation, Job, Notification, PlanStep, utcnow
from app.telemetry.metrics import FleetCollector
from tests.support.env import reset_process_state
from tests.support.jobs import escalated_refund, settle, submit_ticket
from tests.support.processes import wait_for
from tests.support.receiver import Receiver
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.integration

CONSOLE = "https://opsgate.acme.test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


def configure(monkeypatch: pytest.MonkeyPatch, receiver: Receiver, **env: str) -> None:
    """Point this process (and the workers started after this) at the receiver."""
    monkeypatch.setenv("OPSGATE_NOTIFY_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("OPSGATE_CONSOLE_URL", CONSOLE)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_process_state()


def escalate_real_job(start_worker: Any, delivery: str) -> tuple[str, Escalation]:
    """Ticket 4823 asks for 90.00 USD, over the 50.00 autonomy cap: approval_required."""
    start_worker()
    job_id = submit_ticket(4823, 103, delivery)
    assert settle(job_id) == "escalated"
    with session_scope() as s:
        esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
        assert esc.reason == "approval_required"
        return job_id, esc


def rows(escalation_id: int | None = None) -> list[Notification]:
    with session_scope() as s:
        query = select(Notification).order_by(Notification.id)
        if escalation_id is not None:
            query = query.where(Notification.escalation_id == escalation_id)
        return list(s.scalars(query))


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, str | int) and not isinstance(value, bool):
        yield str(value)


def assert_no_personal_data(job_id: str, esc: Escalation, posted: str) -> None:
    """None of the job's input values, its requester, the step's arguments, the escalation's
    detail or evidence strings appear in what was posted."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        steps = s.scalars(select(PlanStep).where(PlanStep.job_id == job_id)).all()
        private = [
            job.requester,
            esc.detail,
            *_leaves(job.input),
            *(leaf for step in steps for leaf in _leaves(step.args)),
            *_leaves(esc.evidence),
        ]
    # Reference fields are allowed; so are words too short to identify anyone.
    allowed = {esc.reason, job.workflow, "usd", "USD"}
    checked = [p for p in private if len(p) >= 4 and p not in allowed]
    assert "4823" in checked and "zendesk-user:103" in checked and "ch_1003" in checked
    for value in checked:
        assert value not in posted, value


# --- through a real worker -----------------------------------------------------------------------


def test_an_escalation_reaches_the_webhook_once_in_slack_format_without_personal_data(
    pg_env: Any,
    sandbox: Sandbox,
    start_worker: Any,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, receiver)

    job_id, esc = escalate_real_job(start_worker, "notify-slack-1")

    # The human-queue task delivers right after the escalation commits: no beat needed
    got = wait_for(lambda: receiver.delivered() or None, timeout=30, what="the notification")
    assert len(got) == 1
    body = got[0].json()
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(f"Escalation #{esc.id} needs a reviewer: support_refund")
    lead = body["blocks"][0]["text"]["text"]
    assert f"<{CONSOLE}/ui/escalations/{esc.id}|" in lead
    assert "under 100 USD" in body["text"]
    # The worker records the delivery after the receiver answered: wait for that commit
    wait_for(
        lambda: [r.status for r in rows(esc.id)] == ["sent"], timeout=30, what="the send recorded"
    )
    (row,) = rows(esc.id)
    assert (row.kind, row.status, row.attempts) == ("opened", "sent", 1)
    assert got[0].headers["x-opsgate-notification-id"] == row.notification_id
    assert_no_personal_data(job_id, esc, got[0].raw.decode())
    # The next beat ticks send nothing again (the deadline is days away: no reminder yet)
    notifications.run_due()
    notifications.run_due()
    assert len(receiver.all()) == 1


def test_the_json_format(
    pg_env: Any,
    sandbox: Sandbox,
    start_worker: Any,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, receiver, OPSGATE_NOTIFY_FORMAT="json")

    job_id, esc = escalate_real_job(start_worker, "notify-json-1")

    got = wait_for(lambda: receiver.delivered() or None, timeout=30, what="the notification")
    body = got[0].json()
    (row,) = rows(esc.id)
    assert (
        body["notification_id"]
        == row.notification_id
        == got[0].headers["x-opsgate-notification-id"]
    )
    assert {k: v for k, v in body.items() if k not in ("notification_id", "age_seconds")} == {
        "kind": "opened",
        "escalation_id": esc.id,
        "workflow": "support_refund",
        "reason": "approval_required",
        "amount_band": "under 100 USD",
        "deadline": esc.deadline.isoformat() if esc.deadline else None,
        "url": f"{CONSOLE}/ui/escalations/{esc.id}",
    }
    assert isinstance(body["age_seconds"], int) and 0 <= body["age_seconds"] < 60
    # The idempotency id is random: leave it out of the personal-data check
    posted = json.dumps({k: v for k, v in body.items() if k != "notification_id"})
    assert_no_personal_data(job_id, esc, posted)


def test_a_reminder_arrives_once_when_the_deadline_is_near(
    pg_env: Any,
    sandbox: Sandbox,
    start_worker: Any,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A deadline 10 minutes away is inside a one-hour reminder window from the start
    configure(
        monkeypatch,
        receiver,
        OPSGATE_NOTIFY_FORMAT="json",
        OPSGATE_DECISION_DEADLINE="600",
        OPSGATE_NOTIFY_REMINDER_BEFORE="3600",
    )
    job_id, esc = escalate_real_job(start_worker, "notify-remind-1")
    wait_for(lambda: receiver.delivered() or None, timeout=30, what="the opened message")

    # When beat runs
    first = notifications.run_due()

    assert first["reminders_queued"] == 1 and first["sent"] == 1
    kinds = [r.json()["kind"] for r in receiver.delivered()]
    assert kinds == ["opened", "reminder"]
    reminder = receiver.delivered()[1].json()
    assert reminder["escalation_id"] == esc.id and reminder["deadline"] is not None
    assert_no_personal_data(
        job_id, esc, json.dumps({k: v for k, v in reminder.items() if k != "notification_id"})
    )
    # And not again on the next tick
    assert notifications.run_due() == {"reminders_queued": 0, "sent": 0, "pending": 0, "failed": 0}
    assert len(receiver.all()) == 2
    assert [(r.kind, r.status) for r in rows(esc.id)] == [("opened", "sent"), ("reminder", "sent")]


# --- delivery: retries, crashes, concurrency -----------------------------------------------------


def test_a_failing_receiver_gets_the_message_once_after_its_failures(
    pg_env: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, receiver, OPSGATE_NOTIFY_BACKOFF="0.2")
    receiver.fail_next = 2
    _, esc_id = escalated_refund()

    # The beat task retries with backoff until the receiver takes it
    def sent() -> bool:
        notifications.deliver()
        return bool(receiver.delivered())

    wait_for(sent, timeout=30, what="the delivery after two failures")

    assert [r.status for r in receiver.all()] == [500, 500, 200]
    (row,) = rows(esc_id)
    assert (row.status, row.attempts) == ("sent", 3)
    assert row.last_error == "HTTP 500 from 127.0.0.1"  # the host only: the URL is a secret
    for _ in range(3):
        notifications.deliver()
    assert len(receiver.delivered()) == 1 and len(receiver.all()) == 3


def test_a_receiver_that_keeps_failing_is_given_up_and_counted(
    pg_env: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, receiver, OPSGATE_NOTIFY_BACKOFF="0.1", OPSGATE_NOTIFY_MAX_ATTEMPTS="2")
    receiver.fail_next = 100
    _, esc_id = escalated_refund()

    def given_up() -> bool:
        notifications.deliver()
        return rows(esc_id)[0].status == "failed"

    wait_for(given_up, timeout=30, what="the notification to be given up")

    assert len(receiver.all()) == 2
    notifications.deliver()
    assert len(receiver.all()) == 2
    samples = {
        (s.name, s.labels.get("kind"), s.labels.get("outcome")): s.value
        for metric in FleetCollector().collect()
        for s in metric.samples
        if s.name.startswith("opsgate_notifications")
    }
    assert samples[("opsgate_notifications_total", "opened", "failed")] == 1
    assert samples[("opsgate_notifications_total", "opened", "sent")] == 0


def test_two_concurrent_delivery_runs_send_once(
    pg_env: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, receiver)
    receiver.delay = 1.0  # both runs are inside their POST window at once
    escalated_refund()
    escalated_refund()
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []

    def run() -> None:
        start.wait()
        results.append(notifications.deliver())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sum(r["sent"] for r in results) == 2
    ids = [r.headers["x-opsgate-notification-id"] for r in receiver.all()]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(r.status == "sent" and r.attempts == 1 for r in rows())


def test_a_run_that_crashed_after_claiming_is_taken_over_when_its_claim_runs_out(
    pg_env: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, receiver)
    _, esc_id = escalated_refund()
    # Given a run that claimed the row and died before posting
    with session_scope() as s:
        assert len(notifications.claim(s)) == 1
        s.commit()
    # While its claim holds, nobody else sends it
    assert notifications.deliver()["sent"] == 0
    # When the claim runs out, the next run sends it
    with session_scope() as s:
        s.execute(update(Notification).values(claimed_until=utcnow() - timedelta(seconds=1)))
        s.commit()
    assert notifications.deliver()["sent"] == 1
    (row,) = rows(esc_id)
    assert (row.status, row.attempts, len(receiver.delivered())) == ("sent", 2, 1)


def test_a_decided_escalation_is_not_announced(
    pg_env: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, receiver)
    _, esc_id = escalated_refund()
    with session_scope() as s:
        s.execute(update(Escalation).values(status="closed"))
        s.commit()

    assert notifications.deliver()["sent"] == 0

    assert receiver.all() == [] and rows(esc_id)[0].status == "skipped"


def test_without_a_webhook_nothing_is_created(pg_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_DECISION_DEADLINE", "600")
    reset_process_state()
    _, esc_id = escalated_refund()

    assert notifications.run_due() == {}
    with session_scope() as s:
        assert notifications.queue_reminders(s) == 0
    assert rows() == []
    with session_scope() as s:
        assert s.get(Escalation, esc_id) is not None
