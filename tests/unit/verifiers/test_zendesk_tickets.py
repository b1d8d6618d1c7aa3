"""verifiers/zendesk/tickets.py: the rules for zendesk.add_comment and zendesk.update_ticket."""

from __future__ import annotations

from typing import Any

import pytest

from app.controls.calls import CallRecorder
from tests.support.sandbox import Sandbox
from verifiers.base import Facts, Verdict, run_chain
from verifiers.chains import CHAINS
from verifiers.zendesk import tickets


def facts(*, target: int = 4821, job_ticket: Any = 4821, status: str = "open") -> Facts:
    return Facts(
        tool="zendesk.add_comment",
        args={"ticket_id": target, "body": "Refunded.", "public": False},
        job_input={"ticket_id": job_ticket},
        data={"ticket": {"id": target, "status": status}},
    )


def test_comment_on_the_jobs_open_ticket_passes() -> None:
    failure, verdicts = run_chain(tickets.RULES, facts())

    assert failure is None
    assert [v.rule for v in verdicts] == ["ticket_is_the_jobs", "ticket_open_for_comments"]


def test_comment_targeting_another_ticket_fails() -> None:
    verdict = tickets.TicketIsTheJobs().check(facts(target=4822))

    assert not verdict.ok
    assert verdict.evidence == {"expected": 4821, "asked": 4822}


def test_closed_ticket_fails() -> None:
    verdict = tickets.TicketOpenForComments().check(facts(status="closed"))

    assert not verdict.ok and verdict.evidence == {"status": "closed"}


@pytest.mark.parametrize("status", ["new", "open", "pending", "hold", "solved"])
def test_tickets_not_closed_accept_comments(status: str) -> None:
    assert tickets.TicketOpenForComments().check(facts(status=status)).ok


def test_wrong_ticket_stops_the_chain_before_the_status_check() -> None:
    failure, verdicts = run_chain(tickets.RULES, facts(target=4822, status="closed"))

    assert failure is not None and failure.rule == "ticket_is_the_jobs"
    assert len(verdicts) == 1


# --- zendesk.update_ticket ------------------------------------------------------------------


def update(
    *, target: int = 4821, job_ticket: Any = 4821, current: str = "open", **changes: Any
) -> Facts:
    return Facts(
        tool="zendesk.update_ticket",
        args={"ticket_id": target, **changes},
        job_input={"ticket_id": job_ticket},
        data={"ticket": {"id": target, "status": current}},
    )


def test_update_of_the_jobs_ticket_passes_every_rule() -> None:
    failure, verdicts = run_chain(tickets.UPDATE_RULES, update(status="open", priority="high"))

    assert failure is None
    assert [v.rule for v in verdicts] == ["ticket_is_the_jobs", "ticket_transition_valid"]


def test_update_of_another_ticket_fails() -> None:
    failure, _ = run_chain(tickets.UPDATE_RULES, update(target=4822))

    assert failure is not None and failure.rule == "ticket_is_the_jobs"
    assert failure.evidence == {"expected": 4821, "asked": 4822}


@pytest.mark.parametrize("changes", [{"status": "open"}, {"tags": ["x"]}, {"priority": "low"}])
def test_closed_ticket_cannot_change_at_all(changes: dict[str, Any]) -> None:
    verdict = tickets.TicketTransitionValid().check(update(current="closed", **changes))

    assert not verdict.ok
    assert verdict.evidence == {"status": "closed", "changes": sorted(changes)}


@pytest.mark.parametrize(
    ("current", "wanted", "ok"),
    [
        ("open", "new", False),
        ("solved", "new", False),
        ("new", "new", True),
        ("new", "open", True),
        ("solved", "open", True),
        ("open", "escalated", False),
        ("hold", "solved", True),
    ],
)
def test_status_transitions(current: str, wanted: str, ok: bool) -> None:
    verdict = tickets.TicketTransitionValid().check(update(current=current, status=wanted))

    assert verdict.ok is ok
    if not ok:
        assert verdict.evidence == {"status": current, "wanted": wanted}


@pytest.fixture
def rec(pg_env: dict[str, str], sandbox: Sandbox) -> CallRecorder:
    """A recorder against a fresh sandbox, with real PostgreSQL and Redis behind the gates."""
    return CallRecorder(stage="verify_proposal", workflow="support_refund")


def verify_update(rec: CallRecorder, args: dict[str, Any]) -> Verdict | None:
    f = Facts("zendesk.update_ticket", args, {"ticket_id": args["ticket_id"]})
    CHAINS["zendesk.update_ticket"].gather(rec, f)
    return run_chain(tickets.UPDATE_RULES, f)[0]


def test_update_passes_then_reads_back_on_the_sandbox(rec: CallRecorder) -> None:
    args = {"ticket_id": 4821, "status": "pending", "priority": "high", "tags": ["Refund Dup"]}
    read_back = CHAINS["zendesk.update_ticket"].read_back
    assert verify_update(rec, args) is None
    before = read_back(rec, args, {}, "step-key")
    assert not before.ok and before.rule == "ticket_fields_match"
    assert set(before.evidence["differ"]) == {"status", "priority", "tags"}

    rec.tool("zendesk.update_ticket", args, key="update-4821")

    # Zendesk stores the tags as lower-cased words: ["refund", "dup"] holds "Refund Dup"
    after = read_back(rec, args, {}, "step-key")
    assert after.ok and after.evidence == {
        "ticket_id": 4821,
        "fields": ["priority", "status", "tags"],
    }


def test_update_of_the_closed_ticket_fails_on_the_sandbox(rec: CallRecorder) -> None:
    failure = verify_update(rec, {"ticket_id": 4829, "tags": ["refund", "seen"]})

    assert failure is not None and failure.rule == "ticket_transition_valid"
    assert failure.evidence == {"status": "closed", "changes": ["tags"]}
