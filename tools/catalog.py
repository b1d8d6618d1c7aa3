"""The tool catalog: stable names, argument models, risk classes and service identities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.errors import PermanentError, one_line
from tools import actions
from tools import args as a
from tools.actions import marker
from tools.base import Risk
from tools.okta import client as okta_api
from tools.salesforce import client as salesforce_api
from tools.stripe import client as stripe_api
from tools.zendesk import client as zendesk_api

__all__ = ["CATALOG", "SERVICE_IDENTITIES", "ToolSpec", "get_tool", "marker"]


@dataclass(frozen=True)
class ToolSpec:
    """One catalog entry: what the tool is, how risky, and who it acts as downstream."""

    name: str
    system: str
    risk: Risk
    args_model: type[a.ToolArgs]
    service_identity: str
    invoke: Callable[[Any, str | None], dict[str, Any]]

    def parse_args(self, args: dict[str, Any]) -> a.ToolArgs:
        """Validate raw arguments, or raise PermanentError naming what is wrong."""
        try:
            return self.args_model.model_validate(args)
        except ValidationError as exc:
            problems = one_line(exc, "args")
            raise PermanentError(f"invalid arguments for {self.name}: {problems}") from exc


_ZD, _ST = zendesk_api.SERVICE_IDENTITY, stripe_api.SERVICE_IDENTITY
_SF, _OK = salesforce_api.SERVICE_IDENTITY, okta_api.SERVICE_IDENTITY
# The service account opsgate acts as in each downstream system.
SERVICE_IDENTITIES = {"zendesk": _ZD, "stripe": _ST, "salesforce": _SF, "okta": _OK}
R, W, X = Risk.READ, Risk.WRITE, Risk.IRREVERSIBLE

CATALOG: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("zendesk.get_ticket", "zendesk", R, a.GetTicketArgs, _ZD, actions.get_ticket),
        ToolSpec("zendesk.add_comment", "zendesk", W, a.AddCommentArgs, _ZD, actions.add_comment),
        ToolSpec(
            "zendesk.update_ticket", "zendesk", W, a.UpdateTicketArgs, _ZD, actions.update_ticket
        ),
        ToolSpec("stripe.get_charge", "stripe", R, a.GetChargeArgs, _ST, actions.get_charge),
        ToolSpec("stripe.refund", "stripe", X, a.RefundArgs, _ST, actions.refund),
        ToolSpec(
            "salesforce.get_invoice", "salesforce", R, a.GetInvoiceArgs, _SF, actions.get_invoice
        ),
        ToolSpec(
            "salesforce.update_invoice",
            "salesforce",
            W,
            a.UpdateInvoiceArgs,
            _SF,
            actions.update_invoice,
        ),
        ToolSpec(
            "salesforce.approve_payment",
            "salesforce",
            X,
            a.ApprovePaymentArgs,
            _SF,
            actions.approve_payment,
        ),
        ToolSpec("okta.get_user", "okta", R, a.GetUserArgs, _OK, actions.get_user),
        ToolSpec("okta.reset_password", "okta", W, a.UserArgs, _OK, actions.reset_password),
        # Adding to a privileged group is treated as irreversible by policy (its group list).
        ToolSpec("okta.add_to_group", "okta", W, a.AddToGroupArgs, _OK, actions.add_to_group),
        ToolSpec("okta.suspend_user", "okta", X, a.UserArgs, _OK, actions.suspend_user),
    )
}


def get_tool(name: str) -> ToolSpec:
    """The catalog entry for a tool name, or PermanentError for an unknown tool."""
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise PermanentError(f"unknown tool {name!r}; known: {known}") from None
