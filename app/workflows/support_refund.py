"""support_refund: a Zendesk ticket asks for a refund of a Stripe charge.

The rules tier refunds a charge the ticket names, in the amount it states, when the refund's
verifier chain will accept it; an internal note on the ticket records what was done.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from app.controls.calls import CallRecorder
from app.errors import NotFound
from app.jobs.context import PlanningContext
from app.jobs.steps import Plan
from app.rules.refunds import check_thread, plan_support_refund
from app.workflows.base import Workflow, WorkflowInput
from verifiers.stripe import refund as refund_verifiers

_CHARGE_ID = re.compile(r"\b(ch_[A-Za-z0-9]+)\b")


class SupportRefundInput(WorkflowInput):
    """support_refund: the Zendesk ticket that asks for the refund."""

    ticket_id: int = Field(gt=0)


def _charge_context(ticket: dict[str, Any], rec: CallRecorder) -> PlanningContext:
    """The one charge the ticket names and its customer's charges around it (the refund's
    verifiers judge these; the rules tier plans only what they will accept)."""
    named = set(_CHARGE_ID.findall(f"{ticket.get('subject', '')}\n{ticket.get('description', '')}"))
    if len(named) != 1:
        return {}
    charge_id = named.pop()
    try:
        charge = rec.tool("stripe.get_charge", {"charge_id": charge_id})["charge"]
    except NotFound:
        return {"charge": None, "customer_charges": []}
    return {"charge": charge, "customer_charges": refund_verifiers.customer_charges(rec, charge)}


def read_context(
    job_input: dict[str, Any],
    requester: str,
    rec: CallRecorder,
    seen: Mapping[str, Any] | None,
) -> PlanningContext:
    """The ticket, and (for planning, not when the soft check reads again with the facts
    the verifiers read in `seen`) the charge it names with its customer's charges."""
    known = (seen or {}).get("ticket")
    if known is not None and known.get("id") == job_input["ticket_id"]:
        return {"ticket": known}
    ticket = rec.tool("zendesk.get_ticket", {"ticket_id": job_input["ticket_id"]})["ticket"]
    if seen is not None:
        return {"ticket": ticket}
    return {"ticket": ticket, **_charge_context(ticket, rec)}


def plan(context: PlanningContext) -> Plan | None:
    """A request taken back or disputed in the thread escalates first; then the refund."""
    check_thread(context["ticket"], context.get("comments") or [])
    return plan_support_refund(
        context["ticket"], context.get("charge"), context.get("customer_charges") or []
    )


WORKFLOW = Workflow(
    name="support_refund",
    input_model=SupportRefundInput,
    read_context=read_context,
    plan=plan,
    policy_doc="refunds",
    signals=frozenset({"charge_named", "amount_stated", "request_asks", "requester_is_payer"}),
    writes=("stripe.refund", "zendesk.add_comment"),
    from_zendesk=True,
)
