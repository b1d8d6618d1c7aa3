"""Issue 14 end to end, with no model configured: a real worker on PostgreSQL and Redis, the
sandbox over real HTTP. The rules tier refunds only an explicit request (in English, German,
French or Spanish); a question goes to the model tier (here: `no_model`); a withdrawal in a
later comment or a chargeback threat in the ticket stops the write, with the sentence in the
escalation's evidence. Nothing is written for any of those."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Escalation
from tests.support.jobs import settle, submit_ticket
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.e2e


def ticket(ticket_id: int, requester: int, description: str, *later: str) -> dict[str, Any]:
    return {
        "id": ticket_id,
        "requester_id": requester,
        "subject": "Order 7731",
        "description": description,
        "comments": [{"author_id": requester, "body": body} for body in later],
    }


def escalation(job_id: str) -> Escalation:
    with session_scope() as s:
        found = s.scalars(
            select(Escalation).where(Escalation.job_id == job_id).order_by(Escalation.id.desc())
        ).first()
        assert found is not None, f"job {job_id} has no escalation"
        s.expunge(found)
        return found


@pytest.fixture
def worker(pg_env: dict[str, str], sandbox: Sandbox, start_worker: Any) -> Sandbox:
    start_worker()
    return sandbox


def test_a_question_is_not_refunded_and_goes_to_the_model_tier(worker: Sandbox) -> None:
    # Given a customer asking whether they would get their money back
    worker.add_tickets(
        ticket(7101, 102, "Would I get the full $40.00 back on ch_1002 if I cancel today?")
    )
    # When the job runs with no model configured
    job_id = submit_ticket(7101, 102, "req-7101")
    # Then the rules tier plans nothing: no_model, and nothing is written
    assert settle(job_id) == lifecycle.ESCALATED
    assert escalation(job_id).reason == "no_model"
    assert worker.applied() == []


def test_a_withdrawal_in_ordinary_words_stops_the_refund(worker: Sandbox) -> None:
    # Given a request taken back in a later comment, in words no fixed phrase list holds
    said = "The parcel turned up this morning, so I don't need the money back any more."
    worker.add_tickets(
        ticket(7102, 102, "Please refund $40.00 for charge ch_1002.", "Any news?", said)
    )
    job_id = submit_ticket(7102, 102, "req-7102")
    # Then the job escalates with the verifier's reason and rule, quoting the sentence
    assert settle(job_id) == lifecycle.ESCALATED
    found = escalation(job_id)
    assert found.reason == "verification_failed"
    assert found.evidence["rule"] == "request_not_withdrawn"
    assert found.evidence["sentence"] == said
    assert found.evidence["where"] == "comment 2"
    # (the rules tier stopped it before planning, with the chain's own reason and rule)
    assert found.evidence["stage"] == "plan"
    assert worker.applied() == []


def test_a_chargeback_threat_in_the_ticket_stops_the_refund(worker: Sandbox) -> None:
    threat = "Refund $40.00 on ch_1002 today or I will file a chargeback with my bank."
    worker.add_tickets(ticket(7103, 102, f"Hello. {threat}"))
    job_id = submit_ticket(7103, 102, "req-7103")
    assert settle(job_id) == lifecycle.ESCALATED
    found = escalation(job_id)
    assert found.reason == "verification_failed"
    assert found.evidence["rule"] == "no_dispute_in_thread"
    assert found.evidence["kind"] == "chargeback"
    assert found.evidence["where"] == "description"
    assert found.evidence["sentence"] == threat
    assert worker.applied() == []


REQUESTS = [
    (7201, 102, "Can you please refund $10.00 for charge ch_1002?", "ch_1002", 1000),
    (7202, 106, "Bitte erstatten Sie 10,00 € für die Zahlung ch_1006.", "ch_1006", 1000),
    (7203, 101, "Pouvez-vous me rembourser 10,00 USD pour le paiement ch_1001 ?", "ch_1001", 1000),
    (7204, 101, "Por favor, reembolsen 5,00 USD del cargo ch_1007.", "ch_1007", 500),
]


@pytest.mark.parametrize(
    ("ticket_id", "requester", "text", "charge", "amount"),
    REQUESTS,
    ids=["en", "de", "fr", "es"],
)
def test_a_polite_request_in_each_language_is_refunded_once(
    worker: Sandbox,
    ticket_id: int,
    requester: int,
    text: str,
    charge: str,
    amount: int,
) -> None:
    worker.add_tickets(ticket(ticket_id, requester, text))
    job_id = submit_ticket(ticket_id, requester, f"req-{ticket_id}")
    assert settle(job_id) == lifecycle.COMPLETED
    refunds = worker.applied("stripe")
    assert len(refunds) == 1
    body = refunds[0]["body"]
    assert (body["charge"], int(body["amount"])) == (charge, amount)
