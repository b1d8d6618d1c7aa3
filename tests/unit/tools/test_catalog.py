"""tools/catalog.py: tool lookup and argument validation errors that name the problem."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import PermanentError
from tools.base import Risk
from tools.catalog import CATALOG, get_tool
from tools.stripe.args import RefundArgs

GOOD_REFUND = {
    "charge_id": "ch_1001",
    "amount": 2500,
    "currency": "usd",
    "reason": "requested_by_customer",
}


def test_unknown_tool_lists_the_known_ones() -> None:
    with pytest.raises(PermanentError) as caught:
        get_tool("stripe.payout")
    message = str(caught.value)
    assert "stripe.payout" in message
    for name in ("stripe.refund", "stripe.get_charge", "zendesk.add_comment", "zendesk.get_ticket"):
        assert name in message


def test_risk_classes_follow_the_design() -> None:
    assert {name: spec.risk for name, spec in CATALOG.items()} == {
        # The design's catalog table, every tool with its risk class.
        "zendesk.get_ticket": Risk.READ,
        "zendesk.add_comment": Risk.WRITE,
        "zendesk.update_ticket": Risk.WRITE,
        "stripe.get_charge": Risk.READ,
        "stripe.refund": Risk.IRREVERSIBLE,
        "salesforce.get_invoice": Risk.READ,
        "salesforce.update_invoice": Risk.WRITE,
        "salesforce.approve_payment": Risk.IRREVERSIBLE,
        "okta.get_user": Risk.READ,
        "okta.reset_password": Risk.WRITE,
        "okta.add_to_group": Risk.WRITE,
        "okta.suspend_user": Risk.IRREVERSIBLE,
    }


def test_good_refund_args_parse() -> None:
    args = get_tool("stripe.refund").parse_args(GOOD_REFUND)

    assert args == RefundArgs(**GOOD_REFUND)


def test_refund_reason_defaults_to_requested_by_customer() -> None:
    raw = {k: v for k, v in GOOD_REFUND.items() if k != "reason"}
    args = get_tool("stripe.refund").parse_args(raw)

    assert isinstance(args, RefundArgs) and args.reason == "requested_by_customer"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -500}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": 25.5}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"currency": "usdollar"}, "currency"),
        ({"currency": "us"}, "currency"),
        ({"charge_id": "py_1001"}, "charge_id"),
        ({"charge_id": "ch_10 01"}, "charge_id"),
        ({"reason": "because"}, "reason"),
        ({"note": "extra"}, "note"),
    ],
)
def test_bad_refund_args_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(PermanentError) as caught:
        get_tool("stripe.refund").parse_args({**GOOD_REFUND, **change})
    message = str(caught.value)
    assert message.startswith("invalid arguments for stripe.refund")
    assert f"{field}:" in message


def test_missing_refund_field_is_named() -> None:
    raw = {k: v for k, v in GOOD_REFUND.items() if k != "charge_id"}

    with pytest.raises(PermanentError, match="charge_id: Field required"):
        get_tool("stripe.refund").parse_args(raw)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"ticket_id": 4821, "body": ""}, "body"),
        ({"ticket_id": 0, "body": "x"}, "ticket_id"),
        ({"ticket_id": 4821, "body": "x", "via": "api"}, "via"),
    ],
)
def test_bad_comment_args_name_the_field(args: dict[str, Any], field: str) -> None:
    with pytest.raises(PermanentError, match=f"zendesk.add_comment: .*{field}:"):
        get_tool("zendesk.add_comment").parse_args(args)


def test_every_tool_has_its_own_service_identity_per_system() -> None:
    identities = {spec.system: spec.service_identity for spec in CATALOG.values()}
    assert set(identities) == {"zendesk", "stripe", "salesforce", "okta"}
    assert len(set(identities.values())) == 4  # no shared credential across systems
    for spec in CATALOG.values():
        assert spec.service_identity == identities[spec.system]


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        (
            "salesforce.update_invoice",
            {"invoice_id": "a01000000000001", "fields": {"Name": "x"}},
            "fields",
        ),
        (
            "salesforce.update_invoice",
            {"invoice_id": "a01000000000001", "fields": {"Status__c": "Approved"}},
            "fields",
        ),
        (
            "salesforce.update_invoice",
            {"invoice_id": "bad id", "fields": {"Amount__c": 1}},
            "invoice_id",
        ),
        ("salesforce.approve_payment", {"invoice_id": "a01000000000001", "amount": "-1"}, "amount"),
        ("okta.add_to_group", {"user_id": "00u1", "group_id": "00g1engineering"}, "user_id"),
        ("zendesk.update_ticket", {"ticket_id": 1, "status": "closed"}, "status"),
        ("okta.get_user", {"login": "x"}, "login"),
    ],
)
def test_bad_args_of_the_other_tools_name_the_field(
    tool: str, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(PermanentError, match=field):
        get_tool(tool).parse_args(args)
