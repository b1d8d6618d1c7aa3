"""verifiers/stripe/refund.py: each stripe.refund rule against hand-built Stripe facts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from verifiers.base import Facts, run_chain
from verifiers.stripe import refund

ALICE = {"id": 101, "email": "alice@example.com"}
BOB = {"id": 102, "email": "bob@example.com"}


def charge(**overrides: Any) -> dict[str, Any]:
    """A charge shaped like Stripe's Charge object (the fields the rules read)."""
    base: dict[str, Any] = {
        "id": "ch_1001",
        "object": "charge",
        "amount": 2500,
        "amount_refunded": 0,
        "currency": "usd",
        "refunded": False,
        "receipt_email": "alice@example.com",
        "billing_details": {"email": "alice@example.com", "name": "Alice Adams"},
        "customer": "cus_alice",
        "created": int(time.time()) - 86_400,
        "disputed": False,
    }
    base.update(overrides)
    return base


TICKET = {
    "id": 4821,
    "requester_id": 101,
    "subject": "Refund",
    "description": "Please refund $25.00 for charge ch_1001.",
}


def facts(
    *,
    amount: Any = 2500,
    currency: str = "usd",
    charge_data: Any = None,
    requester: dict[str, Any] | None = None,
) -> Facts:
    return Facts(
        tool="stripe.refund",
        args={
            "charge_id": "ch_1001",
            "amount": amount,
            "currency": currency,
            "reason": "requested_by_customer",
        },
        job_input={"ticket_id": 4821},
        data={
            "charge": charge() if charge_data is None else charge_data,
            "requester": ALICE if requester is None else requester,
            "requester_ref": "zendesk-user:101#abc",
            "ticket": TICKET,
            "comments": [{"author_id": 101, "body": TICKET["description"]}],
        },
    )


def test_a_sound_refund_passes_every_rule() -> None:
    failure, verdicts = run_chain(refund.RULES, facts())

    assert failure is None
    assert [v.rule for v in verdicts] == [
        "request_not_withdrawn",
        "no_dispute_in_thread",
        "charge_exists",
        "currency_matches",
        "not_already_refunded",
        "amount_within_refundable",
        "charge_belongs_to_requester",
        "charge_not_disputed",
        "refund_within_window",
        "reason_matches_request",
    ]
    assert all(v.ok for v in verdicts)


def test_missing_charge_fails_and_stops_the_chain() -> None:
    f = facts()
    f.data["charge"] = None

    failure, verdicts = run_chain(refund.RULES, f)

    assert failure is not None and failure.rule == "charge_exists"
    assert failure.evidence == {"charge_id": "ch_1001"}
    # The thread's two rules, then the charge's: later rules would need the charge
    assert [v.rule for v in verdicts] == [
        "request_not_withdrawn",
        "no_dispute_in_thread",
        "charge_exists",
    ]


def test_currency_mismatch_fails_with_both_currencies() -> None:
    verdict = refund.CurrencyMatches().check(facts(currency="eur", charge_data=charge()))

    assert not verdict.ok
    assert verdict.evidence == {"refund_currency": "eur", "charge_currency": "usd"}
    assert "EUR" in verdict.detail and "USD" in verdict.detail


def test_currency_comparison_ignores_stripes_case() -> None:
    assert refund.CurrencyMatches().check(facts(charge_data=charge(currency="USD"))).ok


@pytest.mark.parametrize(
    "state",
    [
        {"refunded": True, "amount_refunded": 2500},
        {"refunded": False, "amount_refunded": 2500},
        {"refunded": True, "amount_refunded": 0},
    ],
)
def test_already_refunded_charge_fails(state: dict[str, Any]) -> None:
    verdict = refund.NotAlreadyRefunded().check(facts(charge_data=charge(**state)))

    assert not verdict.ok and verdict.rule == "not_already_refunded"
    assert verdict.evidence["amount"] == 2500


def test_partly_refunded_charge_is_not_already_refunded() -> None:
    assert refund.NotAlreadyRefunded().check(facts(charge_data=charge(amount_refunded=1000))).ok


@pytest.mark.parametrize(
    ("amount", "ok"),
    [(1500, True), (1, True), (1501, False), (0, False), (-5, False), (15.0, False)],
)
def test_amount_must_fit_the_remaining_refundable(amount: Any, ok: bool) -> None:
    # Given a 25.00 charge of which 10.00 is already refunded (15.00 remain)
    f = facts(amount=amount, charge_data=charge(amount_refunded=1000))

    verdict = refund.AmountWithinRefundable().check(f)

    assert verdict.ok is ok
    assert verdict.evidence["remaining"] == 1500


def test_charge_of_another_customer_fails_without_leaking_emails() -> None:
    verdict = refund.ChargeBelongsToRequester().check(facts(requester=BOB))

    assert not verdict.ok and verdict.rule == "charge_belongs_to_requester"
    assert verdict.evidence == {
        "charge_customer": "cus_alice",
        "requester_ref": "zendesk-user:101#abc",
    }
    assert "@" not in repr(verdict)


def test_requester_without_email_fails_closed() -> None:
    verdict = refund.ChargeBelongsToRequester().check(facts(requester={"id": 7}))

    assert not verdict.ok


def test_ownership_by_billing_email_and_case_insensitive() -> None:
    only_billing = charge(receipt_email=None, billing_details={"email": "Alice@Example.com"})

    assert refund.ChargeBelongsToRequester().check(facts(charge_data=only_billing)).ok


def test_ownership_needs_a_payer_email_on_the_charge() -> None:
    anonymous = charge(receipt_email=None, billing_details={"email": None})

    assert not refund.ChargeBelongsToRequester().check(facts(charge_data=anonymous)).ok


def test_chain_reports_the_first_failing_rule() -> None:
    # Both the currency and the amount are wrong: the earlier rule in the chain is the reason.
    failure, verdicts = run_chain(refund.RULES, facts(amount=99999, currency="eur"))

    assert failure is not None and failure.rule == "currency_matches"
    assert [v.ok for v in verdicts] == [True, True, True, False]
