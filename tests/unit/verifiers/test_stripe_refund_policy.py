"""The refund window, disputes and the refund reason: verifiers/stripe/refund.py and the refunds
planner judge them alike (verifiers/stripe/charges.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from app.rules.refunds import plan_support_refund
from verifiers.base import Facts
from verifiers.stripe import charges, refund

DAY = 86_400
NOW = int(time.time())


@pytest.fixture(autouse=True)
def _repo_config(clean_env: Path) -> None:
    """The repository's config/verifiers.yaml (window 30 days, twins within 7)."""


def charge(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "ch_9001",
        "amount": 2500,
        "amount_refunded": 0,
        "currency": "usd",
        "refunded": False,
        "customer": "cus_x",
        "created": NOW - DAY,
        "disputed": False,
        "receipt_email": "x@example.com",
    }
    return base | kw


def ticket(text: str = "Please refund $25.00 for charge ch_9001.") -> dict[str, Any]:
    return {"id": 7001, "subject": "Refund", "description": text}


def facts(c: dict[str, Any], reason: str = "requested_by_customer", **data: Any) -> Facts:
    args = {"charge_id": c["id"], "amount": 2500, "currency": "usd", "reason": reason}
    return Facts("stripe.refund", args, {"ticket_id": 7001}, {"charge": c, **data})


@pytest.mark.parametrize(("age", "ok"), [(1, True), (29.9, True), (30.1, False), (400, False)])
def test_refund_window_counts_days_from_the_charge(age: float, ok: bool) -> None:
    verdict = refund.RefundWithinWindow().check(facts(charge(created=int(NOW - age * DAY))))
    assert verdict.ok is ok
    assert verdict.evidence["window_days"] == 30
    assert round(verdict.evidence["age_days"]) == round(age)
    assert verdict.evidence["created"].endswith("+00:00")


def test_a_charge_without_a_creation_time_fails_closed() -> None:
    c = charge()
    del c["created"]
    assert not refund.RefundWithinWindow().check(facts(c)).ok


def test_a_disputed_charge_is_not_refunded() -> None:
    verdict = refund.ChargeNotDisputed().check(facts(charge(disputed=True)))
    assert not verdict.ok and verdict.evidence["disputed"] is True


@pytest.mark.parametrize(
    "text",
    [
        "I was charged twice for my order",
        "You double charged me",
        "Ich wurde doppelt belastet",
        "Ich wurde zweimal abgebucht",
        "J'ai été débité deux fois",
        "Me cobraron dos veces",
        "Hay un cargo duplicado",
    ],
)
def test_double_charge_lexicon(text: str) -> None:
    assert charges.claims_double_charge(text)


@pytest.mark.parametrize("text", ["Please refund my order", "I was charged for both seats"])
def test_no_double_charge_claimed(text: str) -> None:
    assert not charges.claims_double_charge(text)


TWIN = charge(id="ch_9002", created=NOW - 2 * DAY)
DOUBLE = "I was charged twice. Please refund $25.00 for charge ch_9001."


@pytest.mark.parametrize(
    ("text", "others", "expected"),
    [
        (DOUBLE, [TWIN], "duplicate"),
        (DOUBLE, [], "requested_by_customer"),  # no second charge: not a duplicate
        (DOUBLE, [charge(id="ch_9003", amount=1999)], "requested_by_customer"),
        (DOUBLE, [charge(id="ch_9004", created=NOW - 20 * DAY)], "requested_by_customer"),
        (DOUBLE, [charge(id="ch_9005", customer="cus_y")], "requested_by_customer"),
        ("Please refund $25.00 for charge ch_9001.", [TWIN], "requested_by_customer"),
    ],
)
def test_reason_follows_ticket_and_charges(
    text: str, others: list[dict[str, Any]], expected: str
) -> None:
    c = charge()
    data = {"ticket": ticket(text), "customer_charges": [c, *others]}
    for reason in ("duplicate", "requested_by_customer", "fraudulent"):
        verdict = refund.ReasonMatchesRequest().check(facts(c, reason, **data))
        assert verdict.ok is (reason == expected), (reason, verdict)
    # And the planner picks the reason the verifier accepts
    plan = plan_support_refund(ticket(text), c, [c, *others])
    assert plan is not None and plan.steps[0].args["reason"] == expected


@pytest.mark.parametrize(
    ("c", "rule"),
    [
        (charge(created=NOW - 45 * DAY), "refund_within_window"),
        (charge(disputed=True), "charge_not_disputed"),
        (charge(amount_refunded=2500, refunded=True), "not_already_refunded"),
        (charge(currency="eur"), "currency_matches"),
    ],
)
def test_the_planner_escalates_with_the_rule_the_verifier_would_give(
    c: dict[str, Any], rule: str
) -> None:
    plan = plan_support_refund(ticket(), c, [c])
    assert plan is not None and plan.steps == []
    assert plan.escalate is not None and plan.escalate.rule == rule
