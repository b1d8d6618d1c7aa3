"""The rules tier plans a refund only for an explicit request, and never one the thread takes
back or disputes (app/rules/refunds.py, app/workflows/support_refund.py)."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import EscalationRequired
from app.rules.refunds import plan_support_refund
from app.workflows import registry as rules


def ticket(description: str, subject: str = "Hello") -> dict[str, Any]:
    return {"id": 6001, "requester_id": 101, "subject": subject, "description": description}


@pytest.mark.parametrize(
    "description",
    [
        # questions
        "Would I get the full amount back ($25.00, ch_1001) if I cancel?",
        "How long does a refund of $25.00 for ch_1001 take?",
        "Is it possible to get a refund of $25.00 for ch_1001?",
        # conditional / hypothetical
        "If the parcel doesn't arrive, I want a refund of $25.00 for ch_1001.",
        "I might ask for a refund of $25.00 on ch_1001.",
        "Falls das Paket nicht ankommt, möchte ich 25,00 € für ch_1001 erstattet haben.",
        # complaint without an ask
        "I was charged $25.00 twice on ch_1001, this is ridiculous.",
        # the request only inside quoted history
        "Thanks, all good now.\n\nOn Mon, 3 Mar 2025, Alice <a@example.com> wrote:\n"
        "> Please refund $25.00 for charge ch_1001.",
    ],
)
def test_what_is_not_an_explicit_request_is_not_planned(description: str) -> None:
    assert plan_support_refund(ticket(description)) is None


@pytest.mark.parametrize(
    ("description", "amount", "currency"),
    [
        ("Can you please refund $25.00 for charge ch_1001?", 2500, "usd"),
        ("Bitte erstatten Sie 20,00 € für die Zahlung ch_1006.", 2000, "eur"),
        ("Pouvez-vous me rembourser 20,00 € pour le paiement ch_1006 ?", 2000, "eur"),
        ("Por favor, reembolsen 20,00 € del cargo ch_1006.", 2000, "eur"),
    ],
)
def test_explicit_requests_in_four_languages_are_planned(
    description: str, amount: int, currency: str
) -> None:
    plan = rules.plan("support_refund", {"ticket": ticket(description), "comments": []})
    assert plan is not None and plan.escalate is None
    assert plan.steps[0].args["amount"] == amount
    assert plan.steps[0].args["currency"] == currency


def comment(body: str, author: int = 101) -> dict[str, Any]:
    return {"author_id": author, "body": body, "author_role": "requester"}


def test_a_withdrawal_in_a_later_comment_escalates_with_the_verifiers_rule() -> None:
    context = {
        "ticket": ticket("Please refund $25.00 for charge ch_1001."),
        "comments": [
            comment("Please refund $25.00 for charge ch_1001."),
            comment("Good news, the parcel turned up today. I don't need the money any more."),
        ],
    }
    with pytest.raises(EscalationRequired) as raised:
        rules.plan("support_refund", context)
    assert raised.value.reason == "verification_failed"
    evidence = raised.value.evidence
    assert evidence["rule"] == "request_not_withdrawn"
    assert evidence["where"] == "comment 1"  # the first comment after the description
    assert evidence["sentence"] == "I don't need the money any more."


def test_a_chargeback_threat_in_the_ticket_escalates_with_the_verifiers_rule() -> None:
    context = {
        "ticket": ticket("Refund $25.00 on ch_1001 now or I will file a chargeback."),
        "comments": [],
    }
    with pytest.raises(EscalationRequired) as raised:
        rules.plan("support_refund", context)
    assert raised.value.reason == "verification_failed"
    assert raised.value.evidence["rule"] == "no_dispute_in_thread"
    assert raised.value.evidence["kind"] == "chargeback"
    assert raised.value.evidence["where"] == "description"


def test_an_agents_comment_is_not_the_customers_withdrawal() -> None:
    agent = {"author_id": 900, "body": "Never mind the previous note.", "author_role": "agent"}
    context = {
        "ticket": ticket("Please refund $25.00 for charge ch_1001."),
        "comments": [comment("Please refund $25.00 for charge ch_1001."), agent],
    }
    assert rules.plan("support_refund", context) is not None
