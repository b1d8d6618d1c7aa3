"""app/human/revisions.py: later steps restated from a reviewer's edit (pure, no database), and the
amount spans of app/rules/refunds.py it rewrites."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import InputError
from app.human.revisions import Edit, restate
from app.reading.amounts import StatedAmount, find_amount_spans, find_amounts

REFUND = {
    "charge_id": "ch_1003",
    "amount": 9000,
    "currency": "usd",
    "reason": "requested_by_customer",
}


def edit(**changes: Any) -> Edit:
    """The reviewer's edit of the refund step s1 (now at revision 2)."""
    return Edit.between("s1", 2, REFUND, {**REFUND, **changes})


def note(body: str) -> dict[str, Any]:
    return {"ticket_id": 4823, "public": False, "body": body}


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("refunded $90.00 today", [("$90.00", 9000, "usd")]),
        ("refunded 90.00 USD today", [("90.00 USD", 9000, "usd")]),
        ("refunded USD 90 today", [("USD 90", 9000, "usd")]),
        ("erstattet €90,00 heute", [("€90,00", 9000, "eur")]),
        ("refunded $90.00 USD today", [("$90.00 USD", 9000, "usd")]),
        ("$25.00 fee, 40.00 EUR back", [("$25.00", 2500, "usd"), ("40.00 EUR", 4000, "eur")]),
        ("charge ch_1003 on 2026-11-24", []),
    ],
)
def test_amount_spans_cover_the_whole_statement(text: str, spans: list[Any]) -> None:
    found = find_amount_spans(text)
    assert [(text[s.start : s.end], s.amount.minor, s.amount.currency) for s in found] == spans
    # One detector: find_amounts is the spans' amounts
    assert find_amounts(text) == [s.amount for s in found]


def test_the_rules_planners_note_is_restated_to_the_edited_amount() -> None:
    restated = restate(note("opsgate refunded 90.00 USD on charge ch_1003."), edit(amount=3000))
    assert restated is not None
    assert restated.args["body"] == "opsgate refunded 30.00 USD on charge ch_1003."
    assert (restated.changed, restated.appended) == ({"amount"}, False)


@pytest.mark.parametrize(
    ("body", "currency", "expected"),
    [
        ("We refunded $90.00 to your card.", "usd", "We refunded 30.00 USD to your card."),
        ("Refund of 90.00 USD made.", "usd", "Refund of 30.00 USD made."),
        ("Refund of USD 90 made.", "usd", "Refund of 30.00 USD made."),
        ("Wir haben €90,00 erstattet.", "eur", "Wir haben 30.00 EUR erstattet."),
        ("Asked $90.00, refunded $90.00.", "usd", "Asked 30.00 USD, refunded 30.00 USD."),
    ],
)
def test_every_rendering_of_the_old_amount_is_restated(
    body: str, currency: str, expected: str
) -> None:
    old = {**REFUND, "currency": currency}
    change = Edit.between("s1", 2, old, {**old, "amount": 3000})
    restated = restate(note(body), change)
    assert restated is not None and restated.args["body"] == expected


def test_other_amounts_and_the_same_number_in_another_currency_are_left_alone() -> None:
    body = "Refunded $90.00; the $25.00 fee and the 90.00 EUR voucher stay."
    restated = restate(note(body), edit(amount=3000))
    assert restated is not None
    assert restated.args["body"] == (
        "Refunded 30.00 USD; the $25.00 fee and the 90.00 EUR voucher stay."
    )


def test_a_currency_change_restates_the_amount_in_the_new_currency() -> None:
    restated = restate(note("Refunded $90.00."), edit(currency="eur"))
    assert restated is not None and restated.args["body"] == "Refunded 90.00 EUR."


def test_a_changed_charge_is_replaced_as_a_whole_token_and_as_a_whole_value() -> None:
    change = edit(charge_id="ch_1004")
    assert change.values == {"charge_id": ("ch_1003", "ch_1004")} and change.money is None
    restated = restate(note("Refunded on charge ch_1003 (not ch_10031)."), change)
    assert restated is not None
    assert restated.args["body"] == "Refunded on charge ch_1004 (not ch_10031)."
    assert restated.changed == {"charge_id"}
    read = restate({"charge_id": "ch_1003"}, change)
    assert read is not None and read.args == {"charge_id": "ch_1004"}


def test_nested_strings_are_restated_too() -> None:
    args = {"invoice_id": "a01", "fields": {"Hold_Reason__c": "refunded $90.00 on ch_1003"}}
    restated = restate(args, edit(amount=3000, charge_id="ch_1004"))
    assert restated is not None
    assert restated.args["fields"]["Hold_Reason__c"] == "refunded 30.00 USD on ch_1004"
    assert restated.changed == {"amount", "charge_id"}


def test_a_step_that_states_nothing_the_edit_changed_is_left_alone() -> None:
    assert restate(note("Thanks for your patience."), edit(amount=3000)) is None
    assert restate({"ticket_id": 4823, "status": "solved"}, edit(amount=3000)) is None
    # A later step's own amount is its own action, not a statement of the edited one
    assert restate({**REFUND, "charge_id": "ch_1004"}, edit(amount=3000)) is None


def test_an_edit_that_changes_nothing_restates_nothing() -> None:
    assert not Edit.between("s1", 2, REFUND, dict(REFUND))


def test_an_old_amount_without_a_currency_gets_the_executed_amount_appended() -> None:
    # "90" may be the amount or "within 90 days": it is not rewritten; the executed amount
    # is stated below it, so the note is never silently stale.
    body = "Refunded 90 to the card within 90 days of purchase."
    restated = restate(note(body), edit(amount=3000))
    assert restated is not None and restated.appended
    assert restated.args["body"] == (
        body + "\n\nAmount as executed: 30.00 USD (edited by reviewer)."
    )
    # The minor amount written as such counts too; a restated span is not a bare number
    minor = restate(note("Refunded $90.00 (amount=9000)."), edit(amount=3000))
    assert minor is not None and minor.args["body"] == (
        "Refunded 30.00 USD (amount=9000).\n\nAmount as executed: 30.00 USD (edited by reviewer)."
    )
    clean = restate(note("Refunded $90.00."), edit(amount=3000))
    assert clean is not None and not clean.appended


def test_an_old_amount_in_a_token_that_cannot_take_a_line_refuses_the_edit() -> None:
    with pytest.raises(InputError, match="cannot be restated|no line can be added"):
        restate({"ticket_id": 4823, "tags": ["refund-90"]}, edit(amount=3000))


def test_short_values_are_replaced_only_as_whole_values() -> None:
    old = {"ticket_id": 4823, "group_id": 7}
    change = Edit.between("s1", 2, old, {**old, "group_id": 8})
    assert restate(note("Moved to group 7 on day 7."), change) is None
    moved = restate({"ticket_id": 4823, "group_id": 7}, change)
    assert moved is not None and moved.args["group_id"] == 8


def test_stated_amount_type_is_what_edit_carries() -> None:
    assert edit(amount=3000).money == (StatedAmount(9000, "usd"), StatedAmount(3000, "usd"))


def test_a_change_nested_in_the_edited_arguments_is_restated_too() -> None:
    # An invoice update whose purchase order the reviewer corrected, then a note naming it
    old = {"invoice_id": "a01Dn00000qbYnTIAU", "fields": {"Purchase_Order__c": "a02PO0000001"}}
    new = {"invoice_id": old["invoice_id"], "fields": {"Purchase_Order__c": "a02PO0000002"}}
    change = Edit.between("s1", 2, old, new)
    assert change.values == {"Purchase_Order__c": ("a02PO0000001", "a02PO0000002")}
    restated = restate(note("Linked order a02PO0000001 to the invoice."), change)
    assert restated is not None
    assert restated.args["body"] == "Linked order a02PO0000002 to the invoice."


def test_an_amount_without_a_currency_argument_is_restated_verbatim() -> None:
    # salesforce.approve_payment carries a decimal string and no currency: not money here
    old = {"invoice_id": "a01Dn00000qbYnTIAU", "amount": "1200.00"}
    change = Edit.between("s1", 2, old, {**old, "amount": "1100.00"})
    assert change.money is None and change.values == {"amount": ("1200.00", "1100.00")}
    restated = restate(note("Approved 1200.00 for payment."), change)
    assert restated is not None and restated.args["body"] == "Approved 1100.00 for payment."
