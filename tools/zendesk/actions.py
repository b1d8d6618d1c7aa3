"""What each Zendesk tool does. Zendesk has no idempotency keys: a comment carries the step's
marker, and a retry that finds it takes the earlier attempt's effect as its own."""

from __future__ import annotations

from typing import Any

from tools.zendesk import client as zendesk_api
from tools.zendesk.args import AddCommentArgs, GetTicketArgs, UpdateTicketArgs


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
