"""verifiers/zendesk/thread.py: the refund chain's rules on the ticket's whole thread."""

from __future__ import annotations

from typing import Any

from verifiers.base import Facts
from verifiers.stripe import refund
from verifiers.zendesk.thread import NoDisputeInThread, RequestNotWithdrawn, stop, thread

TICKET = {
    "id": 4821,
    "requester_id": 101,
    "subject": "Refund",
    "description": "Please refund $25.00 for charge ch_1001.",
}


def comments(*later: tuple[str, str]) -> list[dict[str, Any]]:
    """The description as the first comment, then (role, body) pairs."""
    first = {"author_id": 101, "body": TICKET["description"], "author_role": "requester"}
    ids = {"requester": 101, "end-user": 102, "agent": 900}
    return [first] + [{"author_id": ids[r], "body": b, "author_role": r} for r, b in later]


def facts(ticket: dict[str, Any], thread_comments: list[dict[str, Any]] | None) -> Facts:
    data: dict[str, Any] = {"ticket": ticket}
    if thread_comments is not None:
        data["comments"] = thread_comments
    return Facts("stripe.refund", {"charge_id": "ch_1001"}, {"ticket_id": 4821}, data)


def test_a_standing_request_passes_both_rules() -> None:
    thread_comments = comments(("requester", "Any news? Please don't forget my refund."))
    for rule in (RequestNotWithdrawn(), NoDisputeInThread()):
        assert rule.check(facts(TICKET, thread_comments)).ok


def test_a_withdrawal_in_ordinary_words_fails_with_sentence_and_place() -> None:
    thread_comments = comments(
        ("agent", "We are looking into it."),
        ("requester", "Thanks. It turned up after all, so forget the refund."),
    )
    verdict = RequestNotWithdrawn().check(facts(TICKET, thread_comments))
    assert not verdict.ok and verdict.rule == "request_not_withdrawn"
    assert verdict.evidence == {
        "rule": "request_not_withdrawn",
        "sentence": "It turned up after all, so forget the refund.",
        "where": "comment 2",
        "kind": "withdrawal",
        "certain": True,
    }


def test_an_uncertain_withdrawal_fails_too() -> None:
    thread_comments = comments(("requester", "Not sure the refund is still what I want."))
    verdict = RequestNotWithdrawn().check(facts(TICKET, thread_comments))
    assert not verdict.ok and verdict.evidence["certain"] is False


def test_another_users_withdrawal_does_not_count_but_their_dispute_does() -> None:
    withdrawn = comments(("end-user", "Never mind, forget the refund."))
    assert RequestNotWithdrawn().check(facts(TICKET, withdrawn)).ok
    disputed = comments(("end-user", "I'm her husband and our lawyer will call you."))
    verdict = NoDisputeInThread().check(facts(TICKET, disputed))
    assert not verdict.ok and verdict.evidence["kind"] == "legal"
    assert verdict.evidence["where"] == "comment 1"


def test_an_agents_words_are_not_a_dispute() -> None:
    thread_comments = comments(("agent", "If you file a chargeback we cannot refund."))
    assert NoDisputeInThread().check(facts(TICKET, thread_comments)).ok


def test_a_dispute_in_the_description_fails() -> None:
    ticket = dict(TICKET, description="Refund $25.00 on ch_1001 or I will sue you.")
    verdict = NoDisputeInThread().check(facts(ticket, comments()))
    assert not verdict.ok
    assert verdict.evidence["where"] == "description"
    assert verdict.evidence["sentence"] == "Refund $25.00 on ch_1001 or I will sue you."


def test_a_thread_that_was_not_read_fails_closed() -> None:
    assert not RequestNotWithdrawn().check(facts(TICKET, None)).ok


def test_the_thread_rules_run_first_in_the_refund_chain() -> None:
    assert [r.name for r in refund.RULES[:2]] == ["request_not_withdrawn", "no_dispute_in_thread"]


def test_stop_names_the_first_failing_rule_in_chain_order() -> None:
    both = comments(("requester", "I no longer need the refund, I opened a dispute with my bank."))
    verdict = stop(TICKET, both)
    assert verdict is not None and verdict.rule == "request_not_withdrawn"
    assert stop(TICKET, comments()) is None


def test_the_thread_is_the_description_then_each_later_comment() -> None:
    said = thread(TICKET, comments(("agent", "On it."), ("requester", "Thanks")))
    assert [(s.where, s.by_requester, s.by_end_user) for s in said] == [
        ("description", True, True),
        ("comment 1", False, False),
        ("comment 2", True, True),
    ]
