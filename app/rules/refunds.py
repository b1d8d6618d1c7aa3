"""support_refund in the rules tier: amounts stated in ticket text, and the refund plan."""

from __future__ import annotations

import re
from typing import Any

from app.core.money import format_minor
from app.errors import EscalationRequired
from app.jobs.steps import Plan, PlanEscalation, Step
from app.reading.amounts import StatedAmount, find_amounts
from app.reading.language import mentions_refund, request_intent, strip_quoted
from verifiers.base import Facts, run_chain
from verifiers.stripe import charges as charge_facts
from verifiers.stripe import refund
from verifiers.zendesk.thread import stop

_CHARGE = re.compile(r"\b(ch_[A-Za-z0-9]+)\b")
# The refund's verifier rules the planner judges on the charge and the ticket it read (the
# requester's identity and the ticket's thread are the verify stage's to read).
_JUDGED_HERE = frozenset(
    {
        "charge_exists",
        "currency_matches",
        "not_already_refunded",
        "amount_within_refundable",
        "charge_not_disputed",
        "refund_within_window",
        "reason_matches_request",
    }
)


def plan_support_refund(
    ticket: dict[str, Any],
    charge: dict[str, Any] | None = None,
    customer_charges: list[dict[str, Any]] | None = None,
) -> Plan | None:
    """A refund plan for a ticket that names a charge and an amount; None if not recognized.

    Given the charge (and the customer's charges), the reason is the one the verifiers
    accept, and a refund they would refuse (an old, disputed or refunded charge) escalates
    with their rule instead of being planned."""
    text = f"{ticket.get('subject', '')}\n{ticket.get('description', '')}"
    # Only an explicit, unconditional request in the ticket's own words (quoted history
    # dropped) is planned here; a question, a condition or a complaint goes to the model tier.
    text = strip_quoted(text)
    if not request_intent(text).requested:
        return None
    charges = set(_CHARGE.findall(text))
    amounts = set(find_amounts(text))
    # Two charges or two different amounts: the rules cannot tell which is meant.
    if len(charges) != 1 or len(amounts) != 1:
        return None
    amount = amounts.pop()
    charge_id = charges.pop()
    ticket_id = int(ticket["id"])
    shown = format_minor(amount.minor, amount.currency)
    reason = "requested_by_customer"
    if charge is not None and charge.get("id") == charge_id:
        reason = charge_facts.expected_reason(
            charge_facts.ticket_text(ticket), charge, customer_charges or []
        )
        refused = _refused(ticket, charge, customer_charges or [], amount, reason)
        if refused is not None:
            return refused
    return Plan(
        workflow="support_refund",
        summary=f"Refund {shown} on charge {charge_id} as asked in ticket {ticket_id}",
        confidence=0.95,
        steps=[
            Step(
                id="refund",
                tool="stripe.refund",
                args={
                    "charge_id": charge_id,
                    "amount": amount.minor,
                    "currency": amount.currency,
                    "reason": reason,
                },
                rationale=f"The requester asks for a refund of {shown} on {charge_id}.",
                evidence=[f"ticket:{ticket_id}", f"charge:{charge_id}", "policy:refunds#autonomy"],
            ),
            Step(
                id="note",
                tool="zendesk.add_comment",
                args={
                    "ticket_id": ticket_id,
                    "public": False,
                    "body": f"opsgate refunded {shown} on charge {charge_id}.",
                },
                rationale="Leave an internal note on the ticket saying what was done.",
                evidence=[f"ticket:{ticket_id}"],
            ),
        ],
    )


def _refused(
    ticket: dict[str, Any],
    charge: dict[str, Any],
    customer_charges: list[dict[str, Any]],
    amount: StatedAmount,
    reason: str,
) -> Plan | None:
    """An escalation naming the refund's verifier rule that would refuse it, or None."""
    args = {
        "charge_id": charge["id"],
        "amount": amount.minor,
        "currency": amount.currency,
        "reason": reason,
    }
    facts = Facts(
        "stripe.refund",
        args,
        {"ticket_id": ticket.get("id")},
        {"charge": charge, "ticket": ticket, "customer_charges": customer_charges},
        workflow="support_refund",
    )
    failure, _ = run_chain([r for r in refund.RULES if r.name in _JUDGED_HERE], facts)
    if failure is None:
        return None
    return Plan(
        workflow="support_refund",
        summary=f"Cannot refund charge {charge['id']} as asked in ticket {ticket.get('id')}",
        confidence=0.95,
        escalate=PlanEscalation(
            reason=failure.detail,
            rule=failure.rule,
            tool="stripe.refund",
            refusal=True,
            evidence=failure.evidence,
        ),
    )


def check_thread(ticket: dict[str, Any], comments: list[dict[str, Any]]) -> None:
    """Before a refund is planned: a request the requester took back, or a dispute anywhere in
    the thread, escalates now with the verifier's own reason and rule
    (`verifiers/zendesk/thread.py`) instead of a plan certain to fail its chain."""
    if not mentions_refund(f"{ticket.get('subject') or ''}\n{ticket.get('description') or ''}"):
        return
    refused = stop(ticket, comments)
    if refused is not None:
        raise EscalationRequired(
            "verification_failed",
            refused.detail,
            {"tool": "stripe.refund", "stage": "plan", **refused.evidence},
        )
