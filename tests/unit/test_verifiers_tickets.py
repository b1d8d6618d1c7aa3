"""verifiers/tickets.py: the rules for zendesk.add_comment."""

from __future__ import annotations

from typing import Any

import pytest

from verifiers import tickets
from verifiers.base import Facts, run_chain


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
