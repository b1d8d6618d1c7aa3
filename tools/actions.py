"""What each tool does, including how a write finds out it already happened.

APIs with idempotency keys (Stripe) get a key derived from the step's key. For APIs without
them, every write reads the system first and treats the wanted state as the earlier attempt's
effect: a comment carrying the step's marker, a group membership, a status already set.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.errors import PermanentError
from tools.args import (
    AddCommentArgs,
    AddToGroupArgs,
    ApprovePaymentArgs,
    GetChargeArgs,
    GetInvoiceArgs,
    GetTicketArgs,
    GetUserArgs,
    RefundArgs,
    UpdateInvoiceArgs,
    UpdateTicketArgs,
    UserArgs,
)
from tools.okta import client as okta_api
from tools.salesforce import client as salesforce_api
from tools.stripe import client as stripe_api
from tools.zendesk import client as zendesk_api

INVOICE = "Invoice__c"


def marker(idempotency_key: str) -> str:
    """The tag written into a Zendesk comment so a retry can see it already exists."""
    return f"[opsgate:{idempotency_key}]"


def get_ticket(args: GetTicketArgs, _key: str | None) -> dict[str, Any]:
    return {"ticket": zendesk_api.get_ticket(args.ticket_id)}


def add_comment(args: AddCommentArgs, key: str | None) -> dict[str, Any]:
    assert key is not None
    tag = marker(key)
    for comment in zendesk_api.list_comments(args.ticket_id):
        if tag in (comment.get("body") or ""):
            return {"comment": comment, "already_applied": True}
    body = f"{args.body}\n\n{tag}"
    answer = zendesk_api.update_ticket(
        args.ticket_id, {"comment": {"body": body, "public": args.public}}
    )
    return {"ticket": answer.get("ticket"), "audit": answer.get("audit"), "already_applied": False}


def zendesk_tags(tags: list[str]) -> set[str]:
    """Tags as Zendesk stores them: lower-cased, split on spaces, without duplicates."""
    return {part for tag in tags for part in tag.lower().split()}


def _ticket_has(ticket: dict[str, Any], field: str, value: Any) -> bool:
    if field == "tags":
        return zendesk_tags(ticket.get("tags") or []) == zendesk_tags(value)
    return bool(ticket.get(field) == value)


def update_ticket(args: UpdateTicketArgs, _key: str | None) -> dict[str, Any]:
    wanted = args.changes()
    ticket = zendesk_api.get_ticket(args.ticket_id)
    if all(_ticket_has(ticket, k, v) for k, v in wanted.items()):
        return {"ticket": ticket, "already_applied": True}
    answer = zendesk_api.update_ticket(args.ticket_id, wanted)
    return {"ticket": answer.get("ticket"), "audit": answer.get("audit"), "already_applied": False}


def get_charge(args: GetChargeArgs, _key: str | None) -> dict[str, Any]:
    return {"charge": stripe_api.get_charge(args.charge_id)}


def refund(args: RefundArgs, key: str | None) -> dict[str, Any]:
    assert key is not None
    return stripe_api.refund(
        args.charge_id,
        args.amount,
        args.reason,
        idempotency_key=key,
        metadata={"opsgate_step": key},
    )


def get_invoice(args: GetInvoiceArgs, _key: str | None) -> dict[str, Any]:
    return {"invoice": salesforce_api.get_record(INVOICE, args.invoice_id)}


def same_salesforce_value(stored: Any, wanted: Any) -> bool:
    """Whether Salesforce already holds `wanted`, in the form it stores it on save: numbers
    as numbers ("800.00" is 800.0), "" as null, 15-character ids as their 18-character form."""
    if wanted == "":
        wanted = None
    if stored is None or wanted is None:
        return stored is None and wanted is None
    if isinstance(stored, int | float) and not isinstance(stored, bool):
        try:
            return Decimal(str(stored)) == Decimal(str(wanted))
        except ArithmeticError:
            return False
    if (
        isinstance(stored, str)
        and isinstance(wanted, str)
        and len(stored) == 18
        and len(wanted) == 15
        and stored.isalnum()
    ):
        return stored[:15] == wanted
    return bool(stored == wanted)


def update_invoice(args: UpdateInvoiceArgs, _key: str | None) -> dict[str, Any]:
    record = salesforce_api.get_record(INVOICE, args.invoice_id)
    if all(same_salesforce_value(record.get(k), v) for k, v in args.fields.items()):
        return {"id": args.invoice_id, "fields": args.fields, "already_applied": True}
    salesforce_api.update_record(INVOICE, args.invoice_id, dict(args.fields))
    return {"id": args.invoice_id, "fields": args.fields, "already_applied": False}


def approve_payment(args: ApprovePaymentArgs, _key: str | None) -> dict[str, Any]:
    record = salesforce_api.get_record(INVOICE, args.invoice_id)
    if Decimal(str(record.get("Amount__c"))) != args.amount:
        raise PermanentError(
            f"invoice {args.invoice_id} is for {record.get('Amount__c')}, "
            f"not {args.amount}: refusing to approve"
        )
    if record.get("Status__c") == "Approved":
        return {"id": args.invoice_id, "status": "Approved", "already_applied": True}
    salesforce_api.update_record(INVOICE, args.invoice_id, {"Status__c": "Approved"})
    return {"id": args.invoice_id, "status": "Approved", "already_applied": False}


def get_user(args: GetUserArgs, _key: str | None) -> dict[str, Any]:
    return {"user": okta_api.get_user(args.login)}


def reset_password(args: UserArgs, _key: str | None) -> dict[str, Any]:
    user = okta_api.get_user(args.user_id)
    if user.get("status") == "RECOVERY":  # a reset is already pending: do not send another
        return {"id": args.user_id, "status": "RECOVERY", "already_applied": True}
    okta_api.reset_password(args.user_id)
    return {"id": args.user_id, "status": "RECOVERY", "already_applied": False}


def add_to_group(args: AddToGroupArgs, _key: str | None) -> dict[str, Any]:
    groups = {g.get("id") for g in okta_api.user_groups(args.user_id)}
    if args.group_id in groups:
        return {"id": f"{args.group_id}/{args.user_id}", "already_applied": True}
    okta_api.add_to_group(args.user_id, args.group_id)
    return {"id": f"{args.group_id}/{args.user_id}", "already_applied": False}


def suspend_user(args: UserArgs, _key: str | None) -> dict[str, Any]:
    user = okta_api.get_user(args.user_id)
    if user.get("status") == "SUSPENDED":
        return {"id": args.user_id, "status": "SUSPENDED", "already_applied": True}
    okta_api.suspend_user(args.user_id)
    return {"id": args.user_id, "status": "SUSPENDED", "already_applied": False}
