"""The deterministic `rules` tier: plans the well-structured cases it recognizes, no model.

Each workflow's planner lives in its own module and takes the context `gather_context`
read; this module only picks the planner.
"""

from __future__ import annotations

from collections.abc import Callable

from app.jobs.context import PlanningContext
from app.jobs.steps import Plan
from app.rules.access import plan_it_request
from app.rules.invoices import plan_invoice_exception
from app.rules.refunds import check_thread, plan_support_refund

__all__ = [
    "RULES",
    "plan",
    "plan_invoice_exception",
    "plan_it_request",
    "plan_support_refund",
]

Planner = Callable[[PlanningContext], Plan | None]


def _support_refund(context: PlanningContext) -> Plan | None:
    check_thread(context["ticket"], context.get("comments") or [])
    return plan_support_refund(
        context["ticket"], context.get("charge"), context.get("customer_charges") or []
    )


RULES: dict[str, Planner] = {
    "support_refund": _support_refund,
    "invoice_exception": plan_invoice_exception,
    "it_request": plan_it_request,
}


def plan(workflow: str, context: PlanningContext) -> Plan | None:
    """Plan with the rules tier, or None when the rules do not recognize the request."""
    planner = RULES.get(workflow)
    if planner is None:
        return None
    return planner(context)
