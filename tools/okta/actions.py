"""What each Okta tool does. Okta has no idempotency keys: a write reads the user first and
treats a membership or a status already set as the earlier attempt's effect."""

from __future__ import annotations

from typing import Any

from tools.okta import client as okta_api
from tools.okta.args import AddToGroupArgs, GetUserArgs, UserArgs


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
