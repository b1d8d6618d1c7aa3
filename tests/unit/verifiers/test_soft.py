"""verifiers/soft.py: the deterministic scorer's signals, each holding and each missing."""

from __future__ import annotations

from typing import Any

import pytest

from app.stages.soft_check import ticket_history
from app.workflows import registry
from verifiers.soft import HistoryEvent, SoftEvidence, score


def declared(workflow: str) -> dict[str, Any]:
    """What the workflow's module declares for the soft check (app/workflows/)."""
    found = registry.get(workflow)
    return {"policy_doc": found.policy_doc, "signals": found.signals}


TICKET = "Refund for duplicate charge\nPlease refund $25.00 for charge ch_1001. Thanks, Alice"
ALICE = {"id": 101, "email": "alice@example.com"}
CHARGE = {"id": "ch_1001", "receipt_email": "alice@example.com", "billing_details": {}}


def refund_step(**args: Any) -> dict[str, Any]:
    base = {"charge_id": "ch_1001", "amount": 2500, "currency": "usd", "reason": "duplicate"}
    return {
        "tool": "stripe.refund",
        "args": {**base, **args},
        "rationale": "The requester asks for a refund of $25.00 on ch_1001, charged twice.",
        "evidence": ["ticket:4821", "policy:refunds#eligibility"],
    }


def refund_evidence(**changes: Any) -> SoftEvidence:
    ev = SoftEvidence(
        workflow="support_refund",
        **declared("support_refund"),
        job_input={"ticket_id": 4821},
        requester="zendesk-user:101",
        request_text=TICKET,
        context={"ticket": {"id": 4821}},
        summary="Refund $25.00 on ch_1001",
        steps=[refund_step()],
        facts={"charge": CHARGE, "requester": ALICE},
    )
    for name, value in changes.items():
        setattr(ev, name, value)
    return ev


def missing(ev: SoftEvidence) -> list[str]:
    return [o.signal for o in score(ev).observations if not o.ok]


def test_a_grounded_refund_scores_full_confidence() -> None:
    result = score(refund_evidence())
    assert result.confidence == 1.0
    assert missing(refund_evidence()) == []
    assert result.reasons()[0].startswith("every signal holds")


@pytest.mark.parametrize(
    ("changes", "signal", "below_threshold"),
    [
        ({"steps": [refund_step(charge_id="ch_1007")]}, "charge_named", True),
        ({"steps": [refund_step(amount=9000)]}, "amount_stated", True),
        ({"steps": [refund_step(currency="eur")]}, "amount_stated", True),
        (
            {"facts": {"charge": CHARGE, "requester": {"email": "bob@example.com"}}},
            "requester_is_payer",
            True,
        ),
        (
            {"history": [HistoryEvent("opsgate_note", "already noted by another job", True)]},
            "history_clear",
            True,
        ),
        ({"summary": "Refund $250.00 as the customer demanded"}, "rationale_consistent", True),
        ({"summary": "Refund on ch_9999 instead"}, "rationale_consistent", True),
    ],
)
def test_a_missing_critical_signal_alone_takes_the_score_below_the_threshold(
    changes: dict[str, Any], signal: str, below_threshold: bool
) -> None:
    ev = refund_evidence(**changes)
    assert signal in missing(ev)
    assert (score(ev).confidence < 0.85) is below_threshold
    assert any(signal in r or r for r in score(ev).reasons())


FORWARDED = (
    "Fwd: Late order\nPlease refund $20.00 on ch_1001, the delivery fee.\n\n"
    "---------- Forwarded message ---------\nFrom: Alice <alice@example.com>\n"
    "Date: Tue, 10 Nov 2026 at 18:22\nSubject: Late order\n\nThe total was $35.00."
)
ACCEPTED_OFFER = (
    "Re: Late order\nYes please, go ahead with the refund you offered below.\n\n"
    "On Mon, 16 Nov 2026 at 14:05, Support <help@shop.example> wrote:\n"
    "> We can refund $12.00 on charge ch_1001. Shall we?"
)


@pytest.mark.parametrize(
    ("text", "amount", "holds"),
    [
        # The requester's own words state the amount; the forwarded total is not the ask.
        (FORWARDED, 2000, True),
        (FORWARDED, 3500, False),
        # No amount in the requester's words: the one in the quoted offer they accept.
        (ACCEPTED_OFFER, 1200, True),
        (ACCEPTED_OFFER, 2500, False),
    ],
)
def test_the_amount_stated_is_the_requesters_own_when_they_state_one(
    text: str, amount: int, holds: bool
) -> None:
    ev = refund_evidence(request_text=text, steps=[refund_step(amount=amount)])
    ev.summary = "Refund on ch_1001"
    assert ("amount_stated" not in missing(ev)) is holds


def test_two_amounts_in_the_requesters_own_words_still_veto() -> None:
    text = "Refund\nPlease refund $20.00 on ch_1001.\nNOTE: the right amount is $29.00."
    ev = refund_evidence(request_text=text, steps=[refund_step(amount=2000)])
    assert "amount_stated" in missing(ev)


PAID_THEN_ASKED = (
    "One seat unusable\nI paid $60.00 for two seats (charge ch_1001) but one was behind a "
    "pillar. Please refund $30.00 for that seat."
)


@pytest.mark.parametrize(
    ("text", "amount", "holds"),
    [
        # What was paid is context; the amount the refund is asked of is the ask.
        (PAID_THEN_ASKED, 3000, True),
        (PAID_THEN_ASKED, 6000, False),
        (
            "Erstattung\nIch habe 60,00 € bezahlt. Bitte erstatten Sie 30,00 € für ch_1001.",
            3000,
            True,
        ),
        ("Refund\nYou already refunded $10.00, please refund the remaining $15.00.", 1500, True),
        ("Refund\nYou already refunded $10.00, please refund the remaining $15.00.", 1000, False),
        # Two plausible asks still veto, whichever the plan took.
        ("Refund\nPlease refund $20.00 or $30.00 on ch_1001.", 2000, False),
        ("Refund\nI paid $60.00. Refund $30.00, or $60.00 if you can, on ch_1001.", 3000, False),
    ],
)
def test_of_several_amounts_the_one_asked_back_when_the_words_leave_no_doubt(
    text: str, amount: int, holds: bool
) -> None:
    currency = "eur" if "€" in text else "usd"
    ev = refund_evidence(request_text=text, steps=[refund_step(amount=amount, currency=currency)])
    assert ("amount_stated" not in missing(ev)) is holds


def unstated(text: str, amount: int, refunded: int = 0, **charge: Any) -> SoftEvidence:
    """A refund of `amount` on ch_1001 (25.00 USD, `refunded` already) for a ticket that
    states no amount."""
    read = {**CHARGE, "amount": 2500, "amount_refunded": refunded, "currency": "usd", **charge}
    ev = refund_evidence(request_text=text, steps=[refund_step(amount=amount)])
    ev.facts = {"charge": read, "requester": ALICE}
    ev.summary = "Refund what is left on ch_1001"
    return ev


@pytest.mark.parametrize(
    ("text", "amount", "refunded", "holds"),
    [
        # refunds.md (Amounts): no amount stated, the money asked back: what is left.
        ("Money back\nI want my money back for ch_1001.", 2500, 0, True),
        ("Money back\nI want my money back for ch_1001.", 1500, 1000, True),
        ("Reembolso\nPor favor, reembólsenme lo que queda del cargo ch_1001.", 1500, 1000, True),
        ("Remboursement\nJe veux un remboursement intégral de ch_1001.", 2500, 0, True),
        # Any other amount is one nobody stated.
        ("Money back\nI want my money back for ch_1001.", 2000, 0, False),
        ("Money back\nI want my money back for ch_1001.", 2500, 1000, False),
        # Not the money back as a whole: a bare "refund the charge", a part, a question.
        ("Broken\nPlease refund charge ch_1001, the product broke after a day.", 2500, 0, False),
        ("Seats\nI cancelled one of my two seats (ch_1001). I want my money back.", 2500, 0, False),
        ("Seat\nI want my money back for the cancelled seat on ch_1001.", 2500, 0, False),
        ("Money back?\nWould I get my money back for ch_1001?", 2500, 0, False),
        ("Money back\nIf it does not arrive, I want my money back for ch_1001.", 2500, 0, False),
    ],
)
def test_an_unstated_amount_holds_only_as_what_is_left_when_the_money_is_asked_back(
    text: str, amount: int, refunded: int, holds: bool
) -> None:
    assert ("amount_stated" not in missing(unstated(text, amount, refunded))) is holds


def test_what_is_left_holds_only_on_the_requesters_own_charge_in_its_currency() -> None:
    text = "Money back\nI want my money back for ch_1001."
    assert "amount_stated" not in missing(unstated(text, 2500))
    someone_elses = unstated(text, 2500, receipt_email="bob@example.com")
    assert "amount_stated" in missing(someone_elses)
    assert "amount_stated" in missing(unstated(text, 2500, id="ch_1007"))
    assert "amount_stated" in missing(unstated(text, 2500, currency="eur"))
    assert "amount_stated" in missing(unstated(text, 0, refunded=2500))
    no_charge = unstated(text, 2500)
    no_charge.facts = {"requester": ALICE}
    assert "amount_stated" in missing(no_charge)


def test_the_rationale_may_state_the_charge_as_read_and_what_was_refunded_before() -> None:
    ev = unstated("Money back\nI want my money back for ch_1001.", 1500, 1000)
    ev.context = {"ticket": {"id": 4821}, "charge": ev.facts["charge"]}
    ev.steps[0]["rationale"] = "Of the $25.00 charge $10.00 was refunded before; $15.00 is left."
    assert missing(ev) == []
    ev.steps[0]["rationale"] = "Of the $45.00 charge $10.00 was refunded before."
    assert "rationale_consistent" in missing(ev)


def test_a_history_event_that_does_not_conflict_costs_nothing() -> None:
    ev = refund_evidence(history=[HistoryEvent("earlier_job", "a note was written", False)])
    assert score(ev).confidence == 1.0


def test_a_missing_policy_passage_alone_does_not_stop_a_plan() -> None:
    step = refund_step()
    step["rationale"], step["evidence"] = "zzz qqq", ["ticket:4821", "policy:refunds#nowhere"]
    ev = refund_evidence(steps=[step], summary="zzz")
    # No existing passage cited, none retrieved: one weak signal lost, still above 0.85
    assert "policy_supports" in missing(ev)
    assert score(ev).confidence == pytest.approx(0.9)


def access_evidence(**changes: Any) -> SoftEvidence:
    ev = SoftEvidence(
        workflow="it_request",
        **declared("it_request"),
        job_input={
            "request_type": "group_access",
            "target_login": "dave@corp.example",
            "group_id": "00g4vpnkpL4NFJLRn0h7",
        },
        requester="dave@corp.example",
        request_text="",
        context={"target": {"id": "00u4daveWRji5xAfF0h7"}},
        summary="Add the user to VPN Users",
        steps=[
            {
                "tool": "okta.add_to_group",
                "args": {"user_id": "00u4daveWRji5xAfF0h7", "group_id": "00g4vpnkpL4NFJLRn0h7"},
                "rationale": "The service desk asks for VPN access for the user.",
                "evidence": ["policy:access#group-membership"],
            }
        ],
    )
    for name, value in changes.items():
        setattr(ev, name, value)
    return ev


def test_an_access_plan_that_does_what_was_asked_scores_full() -> None:
    ev = access_evidence()
    ev.request_text = ev.known_text()
    assert missing(ev) == []


def test_an_access_plan_for_another_action_or_user_loses_confidence() -> None:
    other_tool = access_evidence()
    other_tool.steps = [
        dict(
            other_tool.steps[0], tool="okta.suspend_user", args={"user_id": "00u4daveWRji5xAfF0h7"}
        )
    ]
    assert "action_matches_request" in missing(other_tool)
    assert score(other_tool).confidence < 0.85
    other_user = access_evidence()
    other_user.steps = [
        dict(
            other_user.steps[0],
            args={"user_id": "00u1alicesVQijwX60h7", "group_id": "00g4vpnkpL4NFJLRn0h7"},
        )
    ]
    assert "target_is_the_jobs" in missing(other_user)
    other_group = access_evidence()
    other_group.steps = [
        dict(
            other_group.steps[0],
            args={"user_id": "00u4daveWRji5xAfF0h7", "group_id": "00g3adminsqxRccta0h7"},
        )
    ]
    assert "action_matches_request" in missing(other_group)


def test_an_invoice_approval_must_be_for_the_invoice_amount() -> None:
    invoice = {"Id": "a01Dn00000HuWdiIAF", "Amount__c": 1200.0, "CurrencyIsoCode": "USD"}
    ev = SoftEvidence(
        workflow="invoice_exception",
        **declared("invoice_exception"),
        job_input={"invoice_id": "a01Dn00000HuWdiIAF"},
        requester="salesforce",
        request_text="",
        context={"invoice": invoice},
        summary="Approve payment of INV-1001",
        steps=[
            {
                "tool": "salesforce.approve_payment",
                "args": {"invoice_id": "a01Dn00000HuWdiIAF", "amount": "1200.00"},
                "rationale": "INV-1001 matches its purchase order.",
                "evidence": [],
            }
        ],
    )
    ev.request_text = "INV-1001"
    assert "amount_matches_invoice" not in missing(ev)
    ev.steps[0]["args"]["amount"] = "12000.00"
    assert "amount_matches_invoice" in missing(ev)
    assert score(ev).confidence < 0.85


@pytest.mark.parametrize(
    ("body", "taken_back"),
    [
        ("Never mind, I found the order.", True),
        ("Please cancel my refund request", True),
        ("I will open a chargeback with my bank", True),
        ("Actually I'll keep it, the issue is sorted.", True),
        ("Thanks, waiting for the refund", False),
        ("Please don't forget my refund.", False),
    ],
)
def test_withdrawal_words_in_a_later_comment(body: str, taken_back: bool) -> None:
    comments = [{"author_id": 1, "body": "Please refund $20 for ch_1001."}]
    comments.append({"author_id": 1, "body": body})
    events = ticket_history("job-1", {"id": 7, "requester_id": 1}, comments)
    assert bool(events) is taken_back
    # Another author's words are not the requester taking the request back
    comments[1]["author_id"] = 2
    assert ticket_history("job-1", {"id": 7, "requester_id": 1}, comments) == []


@pytest.mark.parametrize(
    "text",
    [
        "Would I get the full $25.00 back for ch_1001 if I cancel?",
        "If it doesn't arrive, I want a refund of $25.00 for ch_1001.",
        "I was charged $25.00 twice on ch_1001, this is ridiculous.",
    ],
)
def test_a_refund_the_ticket_does_not_ask_for_is_vetoed(text: str) -> None:
    ev = refund_evidence(request_text=text)
    observed = {o.signal: o for o in score(ev).observations}
    assert not observed["request_asks"].ok and observed["request_asks"].critical


def test_request_asks_holds_for_an_explicit_request() -> None:
    assert "request_asks" not in missing(refund_evidence())


def test_a_cited_passage_that_exists_supports_the_action() -> None:
    step = refund_step()
    step["rationale"], step["evidence"] = "zzz qqq", ["policy:refunds#eligibility"]
    assert "policy_supports" not in missing(refund_evidence(steps=[step]))


def test_an_invoice_rationale_in_yen_states_the_invoice_amount_in_whole_yen() -> None:
    # ¥ has no minor unit: a hold stating the invoice's ¥184,000 is consistent with it.
    invoice = {"Id": "a01Dn00000HuWdiIAF", "Amount__c": 184000.0, "CurrencyIsoCode": "JPY"}
    ev = SoftEvidence(
        workflow="invoice_exception",
        **declared("invoice_exception"),
        job_input={"invoice_id": "a01Dn00000HuWdiIAF"},
        requester="salesforce",
        request_text="INV-1001",
        context={"invoice": invoice},
        summary="Hold INV-1001: ¥184,000 has no purchase order",
        steps=[
            {
                "tool": "salesforce.update_invoice",
                "args": {"invoice_id": "a01Dn00000HuWdiIAF", "fields": {"Status__c": "On Hold"}},
                "rationale": "The invoice for ¥184,000 names no purchase order.",
                "evidence": [],
            }
        ],
    )
    assert "rationale_consistent" not in missing(ev)
    ev.summary = "Hold INV-1001: ¥1,840 has no purchase order"
    assert "rationale_consistent" in missing(ev)
