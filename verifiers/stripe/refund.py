"""Rules for stripe.refund, checked against Stripe's state (not only opsgate's database)."""

from __future__ import annotations

from typing import Any

from app.errors import NotFound
from tools.stripe import client as stripe_api
from verifiers import config
from verifiers.base import Facts, Reader, Rule, Verdict
from verifiers.stripe import charges
from verifiers.zendesk.thread import NoDisputeInThread, RequestNotWithdrawn, read_comments
from verifiers.zendesk.tickets import requester_of


def gather(rec: Reader, facts: Facts) -> None:
    """Read the charge, the ticket's requester and the ticket's comments."""
    charge_id = facts.args["charge_id"]
    try:
        facts.data["charge"] = rec.tool("stripe.get_charge", {"charge_id": charge_id})["charge"]
    except NotFound:
        facts.data["charge"] = None
    requester_of(rec, facts)
    facts.data["comments"] = read_comments(rec, facts.data["ticket"])
    facts.data["customer_charges"] = customer_charges(rec, facts.data["charge"])


def customer_charges(rec: Reader, charge: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The charge's customer's charges since the double-charge window before it (a twin
    made after it is among them too)."""
    if not charge or not charge.get("customer") or not isinstance(charge.get("created"), int):
        return []
    customer = str(charge["customer"])
    since = charge["created"] - config.current().refund.duplicate_within_days * charges.DAY
    return rec.read(
        "stripe.list_charges",
        {"customer": customer, "created_gte": since},
        lambda: stripe_api.list_charges(customer, since),
    )


def _charge(facts: Facts) -> dict[str, Any]:
    charge = facts.data["charge"]
    assert charge is not None, "ChargeExists runs before every rule that reads the charge"
    return charge


class ChargeExists(Rule):
    """The charge to refund exists in Stripe."""

    name = "charge_exists"

    def check(self, facts: Facts) -> Verdict:
        if facts.data.get("charge") is None:
            return self.failed(
                f"charge {facts.args['charge_id']} does not exist in Stripe",
                charge_id=facts.args["charge_id"],
            )
        return self.passed("charge found", charge_id=facts.args["charge_id"])


class CurrencyMatches(Rule):
    """The refund's currency is the charge's currency."""

    name = "currency_matches"

    def check(self, facts: Facts) -> Verdict:
        asked, actual = facts.args["currency"], _charge(facts)["currency"].lower()
        if asked != actual:
            return self.failed(
                f"refund currency {asked.upper()} differs from the charge's {actual.upper()}",
                refund_currency=asked,
                charge_currency=actual,
            )
        return self.passed("currency matches", currency=actual)


class NotAlreadyRefunded(Rule):
    """The charge is not already fully refunded, per Stripe."""

    name = "not_already_refunded"

    def check(self, facts: Facts) -> Verdict:
        charge = _charge(facts)
        if charge.get("refunded") or charge["amount_refunded"] >= charge["amount"]:
            return self.failed(
                f"charge {charge['id']} is already fully refunded",
                amount=charge["amount"],
                amount_refunded=charge["amount_refunded"],
            )
        return self.passed(
            "charge has refundable balance", amount_refunded=charge["amount_refunded"]
        )


class AmountWithinRefundable(Rule):
    """The amount is a positive integer no larger than what remains refundable."""

    name = "amount_within_refundable"

    def check(self, facts: Facts) -> Verdict:
        charge, amount = _charge(facts), facts.args["amount"]
        remaining = charge["amount"] - charge["amount_refunded"]
        if not isinstance(amount, int) or amount <= 0 or amount > remaining:
            return self.failed(
                f"amount {amount} is not within the refundable {remaining}",
                amount=amount,
                remaining=remaining,
            )
        return self.passed("amount within refundable balance", amount=amount, remaining=remaining)


class ChargeBelongsToRequester(Rule):
    """The charge was paid by the ticket's requester, never another customer."""

    name = "charge_belongs_to_requester"

    def check(self, facts: Facts) -> Verdict:
        charge = _charge(facts)
        requester = (facts.data.get("requester") or {}).get("email", "").lower()
        payer = {
            e.lower()
            for e in (
                charge.get("receipt_email"),
                (charge.get("billing_details") or {}).get("email"),
            )
            if e
        }
        if not requester or requester not in payer:
            return self.failed(
                "the charge was not paid by the ticket's requester",
                charge_customer=charge.get("customer"),
                requester_ref=facts.data.get("requester_ref"),
            )
        return self.passed(
            "charge belongs to the requester", charge_customer=charge.get("customer")
        )


class ChargeNotDisputed(Rule):
    """A charge with a dispute (Stripe's `disputed`) is never refunded by the agent."""

    name = "charge_not_disputed"

    def check(self, facts: Facts) -> Verdict:
        charge = _charge(facts)
        if charge.get("disputed"):
            return self.failed(
                f"charge {charge['id']} is disputed: a refund would pay the customer twice",
                charge_id=charge["id"],
                disputed=True,
            )
        return self.passed("charge is not disputed", charge_id=charge["id"], disputed=False)


class RefundWithinWindow(Rule):
    """The charge was made within the refund window (config/verifiers.yaml refund.window_days,
    counted from Stripe's `created` in UTC)."""

    name = "refund_within_window"

    def check(self, facts: Facts) -> Verdict:
        charge, window = _charge(facts), config.current().refund.window_days
        age, created = charges.age_days(charge), charges.created_at(charge)
        if age is None or created is None:
            return self.failed("Stripe gave no creation time for the charge", window_days=window)
        evidence = {
            "charge_id": charge["id"],
            "created": created.isoformat(),
            "age_days": round(age, 1),
            "window_days": window,
        }
        if age > window:
            return self.failed(
                f"charge {charge['id']} is {age:.0f} days old, past the {window}-day refund window",
                **evidence,
            )
        return self.passed("charge is within the refund window", **evidence)


class ReasonMatchesRequest(Rule):
    """The reason is `duplicate` exactly when the ticket says charged twice and the customer
    has a twin charge (same amount and currency, within days); `requested_by_customer`
    otherwise. `fraudulent` is never the agent's."""

    name = "reason_matches_request"

    def check(self, facts: Facts) -> Verdict:
        charge, asked = _charge(facts), facts.args.get("reason")
        text = charges.ticket_text(facts.data.get("ticket"))
        found = charges.twins(charge, facts.data.get("customer_charges") or [])
        expected = charges.expected_reason(text, charge, facts.data.get("customer_charges") or [])
        evidence = {
            "reason": asked,
            "expected": expected,
            "ticket_claims_double_charge": charges.claims_double_charge(text),
            "twin_charges": [c.get("id") for c in found],
        }
        if asked != expected:
            return self.failed(f"the reason is {asked}, the request shows {expected}", **evidence)
        return self.passed(f"the reason {asked} matches the request", **evidence)


RULES: list[Rule] = [
    # The thread first: a request taken back or a dispute stops the refund whatever the
    # charge says (and the rules tier checks them first too, in the same order).
    RequestNotWithdrawn(),
    NoDisputeInThread(),
    ChargeExists(),
    CurrencyMatches(),
    NotAlreadyRefunded(),
    AmountWithinRefundable(),
    ChargeBelongsToRequester(),
    ChargeNotDisputed(),
    RefundWithinWindow(),
    ReasonMatchesRequest(),
]


def read_back(rec: Reader, args: dict[str, Any], result: dict[str, Any]) -> Verdict:
    """After the write: the refund exists on the charge with the amount, and succeeded."""
    refund_id = result.get("id")
    refunds = rec.read(
        "stripe.list_refunds",
        {"charge": args["charge_id"]},
        lambda: stripe_api.list_refunds(args["charge_id"]),
    )
    match = next((r for r in refunds if r.get("id") == refund_id), None)
    evidence = {"refund_id": refund_id, "charge_id": args["charge_id"], "amount": args["amount"]}
    if match is None:
        return Verdict(False, "refund_exists", "the refund is not on the charge", evidence)
    if match.get("amount") != args["amount"] or match.get("status") != "succeeded":
        return Verdict(
            False,
            "refund_matches",
            "the refund's amount or status differs",
            dict(evidence, found_amount=match.get("amount"), status=match.get("status")),
        )
    return Verdict(True, "refund_confirmed", "refund found on the charge with the amount", evidence)
