"""What a planner reads about a job before it plans: gathered by the plan stage
(app.stages.plan.gather_context), read by the rules tier, shown to the model tiers (less what
`RULES_ONLY` keeps from them) and weighed again by the soft check."""

from __future__ import annotations

from typing import Any, TypedDict


class PlanningContext(TypedDict, total=False):
    """The records a job's planner sees, by workflow; a record that does not exist is None."""

    # support_refund: the ticket and its thread; the charge the ticket names, and the other
    # charges of its customer (the rules tier's only).
    ticket: dict[str, Any]
    comments: list[dict[str, Any]]
    charge: dict[str, Any] | None
    customer_charges: list[dict[str, Any]]
    # invoice_exception and it_request: the job's input and who asks.
    input: dict[str, Any]
    requester: str
    # invoice_exception: the invoice, its purchase order, invoices of the same number and the
    # vendor's open orders.
    invoice: dict[str, Any] | None
    purchase_order: dict[str, Any] | None
    same_number: list[dict[str, Any]]
    vendor_open_orders: list[dict[str, Any]]
    # it_request: the Okta user the request is about, the requester's own, and the groups.
    target: dict[str, Any] | None
    requester_user: dict[str, Any] | None
    target_groups: list[dict[str, Any]]
