"""Which facts to read and which rules to run for each write tool, before and after."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verifiers.base import Facts, Reader, Rule, Verdict
from verifiers.okta import access
from verifiers.salesforce import invoices
from verifiers.stripe import refund
from verifiers.zendesk import tickets


@dataclass(frozen=True)
class Chain:
    """A tool's verification: facts to gather, proposal rules, and the read-back."""

    gather: Callable[[Reader, Facts], None]
    rules: list[Rule]
    read_back: Callable[[Reader, dict[str, Any], dict[str, Any], str], Verdict]


CHAINS: dict[str, Chain] = {
    "stripe.refund": Chain(
        refund.gather,
        refund.RULES,
        lambda rec, args, result, _key: refund.read_back(rec, args, result),
    ),
    "zendesk.add_comment": Chain(tickets.gather, tickets.RULES, tickets.read_back),
    "zendesk.update_ticket": Chain(tickets.gather, tickets.UPDATE_RULES, tickets.read_back_update),
    "salesforce.update_invoice": Chain(
        invoices.gather_update, invoices.UPDATE_RULES, invoices.read_back_update
    ),
    "salesforce.approve_payment": Chain(
        invoices.gather_approve, invoices.APPROVE_RULES, invoices.read_back_approve
    ),
    "okta.reset_password": Chain(access.gather, access.RESET_RULES, access.read_back_reset),
    "okta.add_to_group": Chain(access.gather_grant, access.GRANT_RULES, access.read_back_grant),
    "okta.suspend_user": Chain(access.gather, access.SUSPEND_RULES, access.read_back_suspend),
}
