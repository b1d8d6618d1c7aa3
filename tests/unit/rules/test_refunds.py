"""app/rules/refunds.py (via the rules dispatcher): amounts in ticket text, the refund plan."""

from __future__ import annotations

from typing import Any

import pytest

from app.reading.amounts import StatedAmount, find_amount
from app.rules.refunds import plan_support_refund
from app.workflows import registry as rules
from tools.catalog import get_tool
from tools.sandbox.seed import TICKETS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please refund $25.00 for charge ch_1001.", StatedAmount(2500, "usd")),
        ("Please refund 40.00 USD on charge ch_1002", StatedAmount(4000, "usd")),
        ("Please refund €20.00 for charge ch_1006.", StatedAmount(2000, "eur")),
        ("refund EUR 30 please", StatedAmount(3000, "eur")),
        ("Bitte 19,99 € zurück", StatedAmount(1999, "eur")),
        ("I paid ¥500 / 500 JPY", StatedAmount(500, "jpy")),  # zero-decimal: 500, not 50000
        ("£7.5 back please", StatedAmount(750, "gbp")),
        ("$25", StatedAmount(2500, "usd")),
    ],
)
def test_find_amount(text: str, expected: StatedAmount) -> None:
    assert find_amount(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Please refund 25.00 for charge ch_1001.",  # no currency at all
        "Order 4821 shipped on 2026-11-24",
        "refund 12 XYZ",  # not a currency we know
        "refund 12.50 JPY",  # sub-unit precision in a zero-decimal currency
        "",
    ],
)
def test_find_amount_without_a_usable_currency_is_none(text: str) -> None:
    assert find_amount(text) is None


@pytest.mark.parametrize(
    ("text", "right"),
    [
        ("Please refund $1,250.00", StatedAmount(125000, "usd")),
        ("Bitte € 1.234,56 erstatten", StatedAmount(123456, "eur")),
    ],
)
def test_find_amount_never_misreads_a_thousands_separator(text: str, right: StatedAmount) -> None:
    # Either the right amount or no amount (the rules tier then escalates); never a wrong one.
    assert find_amount(text) in (right, None)


def test_find_amount_returns_the_first_amount_in_the_text() -> None:
    # The docstring promises "the first amount with an explicit currency in the text".
    assert find_amount("Refund 30.00 EUR please (not the $25.00 fee)") == StatedAmount(3000, "eur")


# What each seeded ticket must be planned as: (charge, amount in minor units, currency).
SEEDED_PLANS: dict[int, tuple[str, int, str] | None] = {
    4821: ("ch_1001", 2500, "usd"),
    4822: ("ch_1002", 4000, "usd"),
    4823: ("ch_1003", 9000, "usd"),
    4824: ("ch_1004", 3000, "eur"),  # the ticket's currency, even though the charge is USD
    4825: ("ch_1005", 1500, "usd"),
    4826: None,  # a password reset, not a refund
    4827: ("ch_1006", 2000, "eur"),
    4828: ("ch_1007", 1999, "usd"),
    4829: ("ch_1001", 500, "usd"),
    4830: None,  # no amount stated: left to a model tier
}


def _ticket(ticket_id: int) -> dict[str, Any]:
    seeded = next(t for t in TICKETS if t.id == ticket_id)
    return {
        "id": seeded.id,
        "subject": seeded.subject,
        "description": seeded.description,
        "status": seeded.status,
    }


def test_every_seeded_ticket_is_covered() -> None:
    assert sorted(SEEDED_PLANS) == sorted(t.id for t in TICKETS)


@pytest.mark.parametrize("ticket_id", sorted(t for t, p in SEEDED_PLANS.items() if p))
def test_seeded_refund_tickets_are_planned(ticket_id: int) -> None:
    expected = SEEDED_PLANS[ticket_id]
    assert expected is not None
    charge_id, amount, currency = expected

    plan = plan_support_refund(_ticket(ticket_id))

    assert plan is not None
    assert plan.workflow == "support_refund" and plan.escalate is None
    assert [s.tool for s in plan.steps] == ["stripe.refund", "zendesk.add_comment"]
    refund, note = plan.steps
    assert refund.args == {
        "charge_id": charge_id,
        "amount": amount,
        "currency": currency,
        "reason": "requested_by_customer",
    }
    assert note.args["ticket_id"] == ticket_id
    assert note.args["public"] is False
    assert charge_id in note.args["body"]
    assert f"ticket:{ticket_id}" in refund.evidence
    # The plan is executable as written: every step's args pass the tool's own schema.
    for step in plan.steps:
        get_tool(step.tool).parse_args(step.args)


def test_password_reset_ticket_is_not_a_refund() -> None:
    assert plan_support_refund(_ticket(4826)) is None


def test_rules_tier_dispatches_by_workflow() -> None:
    assert rules.plan("support_refund", {"ticket": _ticket(4821)}) is not None
    assert rules.plan("it_access", {"ticket": _ticket(4821)}) is None


@pytest.mark.parametrize(
    "description",
    [
        "Please refund $10.00 for charges ch_2001 and ch_2002.",  # which one?
        "Please refund my order for charge ch_1001.",  # refund word, no amount
        "Please refund 10.00 for charge ch_1001.",  # amount without currency
        "Please refund $10.00, I was charged twice.",  # no charge id
        "Charge ch_1001 for $10.00 looks odd to me.",  # no refund asked
    ],
)
def test_unclear_requests_are_not_planned(description: str) -> None:
    ticket = {"id": 5000, "subject": "Help", "description": description}
    assert plan_support_refund(ticket) is None


def test_same_charge_named_twice_is_one_charge() -> None:
    ticket = {
        "id": 5001,
        "subject": "Refund ch_1002",
        "description": "Please refund $40.00 for charge ch_1002.",
    }
    plan = plan_support_refund(ticket)

    assert plan is not None and plan.steps[0].args["charge_id"] == "ch_1002"


def test_a_request_in_the_subject_counts() -> None:
    ticket = {"id": 5002, "subject": "Bitte erstatten", "description": "€20.00 for ch_1006."}
    plan = plan_support_refund(ticket)

    assert plan is not None and plan.steps[0].args["amount"] == 2000


def test_a_refund_word_as_a_headline_is_not_a_request() -> None:
    # A subject naming the topic ("Erstattung") asks for nothing: left to the model tier.
    ticket = {"id": 5002, "subject": "Erstattung", "description": "€20.00 for charge ch_1006."}
    assert plan_support_refund(ticket) is None
