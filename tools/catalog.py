"""The tool catalog: stable names, argument models, risk classes and service identities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.errors import PermanentError, one_line
from tools.base import Risk, ToolArgs
from tools.okta import actions as okta
from tools.okta import args as okta_args
from tools.okta import client as okta_api
from tools.salesforce import actions as salesforce
from tools.salesforce import args as salesforce_args
from tools.salesforce import client as salesforce_api
from tools.stripe import actions as stripe
from tools.stripe import args as stripe_args
from tools.stripe import client as stripe_api
from tools.zendesk import actions as zendesk
from tools.zendesk import args as zendesk_args
from tools.zendesk import client as zendesk_api
from tools.zendesk.actions import marker

__all__ = ["CATALOG", "SERVICE_IDENTITIES", "ToolSpec", "get_tool", "marker"]


@dataclass(frozen=True)
class ToolSpec:
    """One catalog entry: what the tool is, how risky, and who it acts as downstream."""

    name: str
    system: str
    risk: Risk
    args_model: type[ToolArgs]
    service_identity: str
    invoke: Callable[[Any, str | None], dict[str, Any]]

    def parse_args(self, args: dict[str, Any]) -> ToolArgs:
        """Validate raw arguments, or raise PermanentError naming what is wrong."""
        try:
            return self.args_model.model_validate(args)
        except ValidationError as exc:
            problems = one_line(exc, "args")
            raise PermanentError(f"invalid arguments for {self.name}: {problems}") from exc


# The service account opsgate acts as in each downstream system.
SERVICE_IDENTITIES = {
    "zendesk": zendesk_api.SERVICE_IDENTITY,
    "stripe": stripe_api.SERVICE_IDENTITY,
    "salesforce": salesforce_api.SERVICE_IDENTITY,
    "okta": okta_api.SERVICE_IDENTITY,
}
R, W, X = Risk.READ, Risk.WRITE, Risk.IRREVERSIBLE


def _tool(
    name: str,
    risk: Risk,
    args_model: type[ToolArgs],
    invoke: Callable[[Any, str | None], dict[str, Any]],
) -> ToolSpec:
    system = name.split(".", 1)[0]
    return ToolSpec(name, system, risk, args_model, SERVICE_IDENTITIES[system], invoke)


CATALOG: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        _tool("zendesk.get_ticket", R, zendesk_args.GetTicketArgs, zendesk.get_ticket),
        _tool("zendesk.add_comment", W, zendesk_args.AddCommentArgs, zendesk.add_comment),
        _tool("zendesk.update_ticket", W, zendesk_args.UpdateTicketArgs, zendesk.update_ticket),
        _tool("stripe.get_charge", R, stripe_args.GetChargeArgs, stripe.get_charge),
        _tool("stripe.refund", X, stripe_args.RefundArgs, stripe.refund),
        _tool("salesforce.get_invoice", R, salesforce_args.GetInvoiceArgs, salesforce.get_invoice),
        _tool(
            "salesforce.update_invoice",
            W,
            salesforce_args.UpdateInvoiceArgs,
            salesforce.update_invoice,
        ),
        _tool(
            "salesforce.approve_payment",
            X,
            salesforce_args.ApprovePaymentArgs,
            salesforce.approve_payment,
        ),
        _tool("okta.get_user", R, okta_args.GetUserArgs, okta.get_user),
        _tool("okta.reset_password", W, okta_args.UserArgs, okta.reset_password),
        # Adding to a privileged group is treated as irreversible by policy (its group list).
        _tool("okta.add_to_group", W, okta_args.AddToGroupArgs, okta.add_to_group),
        _tool("okta.suspend_user", X, okta_args.UserArgs, okta.suspend_user),
    )
}


def get_tool(name: str) -> ToolSpec:
    """The catalog entry for a tool name, or PermanentError for an unknown tool."""
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise PermanentError(f"unknown tool {name!r}; known: {known}") from None
