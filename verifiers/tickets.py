"""Rules for Zendesk writes, and reading a ticket's requester for ownership checks."""

from __future__ import annotations

import hashlib
from typing import Any

from app.calls import CallRecorder
from tools import zendesk_api
from tools.catalog import marker
from verifiers.base import Facts, Rule, Verdict


def requester_of(rec: CallRecorder, facts: Facts) -> None:
    """Read the job's ticket and its requester (email kept out of evidence: a hash instead)."""
    ticket_id = facts.job_input["ticket_id"]
    ticket = rec.tool("zendesk.get_ticket", {"ticket_id": ticket_id})["ticket"]
    user = rec.run(
        "zendesk.get_user",
        "zendesk",
        zendesk_api.SERVICE_IDENTITY,
        {"user_id": ticket["requester_id"]},
        lambda: zendesk_api.get_user(ticket["requester_id"]),
    )
    facts.data["ticket"] = ticket
    facts.data["requester"] = user
    email = (user.get("email") or "").lower().encode()
    facts.data["requester_ref"] = (
        f"zendesk-user:{user.get('id')}#" + hashlib.sha256(email).hexdigest()[:12]
    )


def gather(rec: CallRecorder, facts: Facts) -> None:
    """Read the ticket the comment goes to."""
    facts.data["ticket"] = rec.tool("zendesk.get_ticket", {"ticket_id": facts.args["ticket_id"]})[
        "ticket"
    ]


class TicketIsTheJobs(Rule):
    """The comment goes to the ticket this job is about, not another one."""

    name = "ticket_is_the_jobs"

    def check(self, facts: Facts) -> Verdict:
        expected, asked = facts.job_input.get("ticket_id"), facts.args["ticket_id"]
        if expected != asked:
            return self.failed(
                f"comment targets ticket {asked}, the job is about {expected}",
                expected=expected,
                asked=asked,
            )
        return self.passed("ticket matches the job", ticket_id=asked)


class TicketOpenForComments(Rule):
    """A closed ticket is not reopened by a comment."""

    name = "ticket_open_for_comments"

    def check(self, facts: Facts) -> Verdict:
        status = facts.data["ticket"]["status"]
        if status == "closed":
            return self.failed("the ticket is closed", status=status)
        return self.passed("ticket accepts comments", status=status)


RULES: list[Rule] = [TicketIsTheJobs(), TicketOpenForComments()]


def read_back(rec: CallRecorder, args: dict[str, Any], result: dict[str, Any], key: str) -> Verdict:
    """After the write: the ticket carries the comment with this step's marker."""
    tag = marker(key)
    comments = rec.run(
        "zendesk.list_comments",
        "zendesk",
        zendesk_api.SERVICE_IDENTITY,
        {"ticket_id": args["ticket_id"]},
        lambda: zendesk_api.list_comments(args["ticket_id"]),
    )
    found = [c for c in comments if tag in (c.get("body") or "")]
    evidence = {"ticket_id": args["ticket_id"], "marker": tag, "copies": len(found)}
    if len(found) != 1:
        return Verdict(
            False,
            "comment_present_once",
            f"expected the comment once, found {len(found)}",
            evidence,
        )
    if bool(found[0].get("public")) != bool(args.get("public")):
        return Verdict(False, "comment_visibility", "the comment's visibility differs", evidence)
    return Verdict(True, "comment_confirmed", "the comment is on the ticket", evidence)
