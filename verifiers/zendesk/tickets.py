"""Rules for Zendesk comments and ticket updates, and reading a ticket's requester."""

from __future__ import annotations

import hashlib
from typing import Any

from tools.catalog import marker
from tools.zendesk import client as zendesk_api
from tools.zendesk.actions import zendesk_tags
from verifiers.base import Facts, Reader, Rule, Verdict


def requester_of(rec: Reader, facts: Facts) -> None:
    """Read the job's ticket and its requester (email kept out of evidence: a hash instead)."""
    ticket_id = facts.job_input["ticket_id"]
    ticket = rec.tool("zendesk.get_ticket", {"ticket_id": ticket_id})["ticket"]
    user = rec.read(
        "zendesk.get_user",
        {"user_id": ticket["requester_id"]},
        lambda: zendesk_api.get_user(ticket["requester_id"]),
    )
    facts.data["ticket"] = ticket
    facts.data["requester"] = user
    email = (user.get("email") or "").lower().encode()
    facts.data["requester_ref"] = (
        f"zendesk-user:{user.get('id')}#" + hashlib.sha256(email).hexdigest()[:12]
    )


def gather(rec: Reader, facts: Facts) -> None:
    """Read the ticket the comment goes to."""
    facts.data["ticket"] = rec.tool("zendesk.get_ticket", {"ticket_id": facts.args["ticket_id"]})[
        "ticket"
    ]


class TicketIsTheJobs(Rule):
    """The write (a comment or an update) goes to the ticket this job is about, not another."""

    name = "ticket_is_the_jobs"

    def check(self, facts: Facts) -> Verdict:
        expected, asked = facts.job_input.get("ticket_id"), facts.args["ticket_id"]
        if expected != asked:
            return self.failed(
                f"the write targets ticket {asked}, the job is about {expected}",
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


def read_back(rec: Reader, args: dict[str, Any], result: dict[str, Any], key: str) -> Verdict:
    """After the write: the ticket carries the comment with this step's marker."""
    tag = marker(key)
    comments = rec.read(
        "zendesk.list_comments",
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


STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
# The fields zendesk.update_ticket may set (tools/zendesk/args.py UpdateTicketArgs.changes()).
UPDATE_FIELDS = ("status", "priority", "tags", "group_id")


def _changes(args: dict[str, Any]) -> dict[str, Any]:
    return {k: args[k] for k in UPDATE_FIELDS if args.get(k) is not None}


class TicketTransitionValid(Rule):
    """A closed ticket is final, and no ticket goes back to new."""

    name = "ticket_transition_valid"

    def check(self, facts: Facts) -> Verdict:
        status, wanted = facts.data["ticket"]["status"], facts.args.get("status")
        changes = sorted(_changes(facts.args))
        # Zendesk itself still lets tags and priority change on a closed ticket; we do not:
        # a closed ticket is the customer's record of what happened.
        if status == "closed":
            return self.failed("the ticket is closed", status=status, changes=changes)
        if wanted is not None and (wanted not in STATUSES or (wanted == "new" and status != "new")):
            return self.failed(
                f"a {status} ticket cannot become {wanted}", status=status, wanted=wanted
            )
        return self.passed("the ticket may change", status=status, wanted=wanted, changes=changes)


UPDATE_RULES: list[Rule] = [TicketIsTheJobs(), TicketTransitionValid()]


def _holds(ticket: dict[str, Any], field: str, value: Any) -> bool:
    if field == "tags":  # compared as Zendesk stores them (lower-cased words, no duplicates)
        return zendesk_tags(ticket.get("tags") or []) == zendesk_tags(value)
    return bool(ticket.get(field) == value)


def read_back_update(
    rec: Reader, args: dict[str, Any], _result: dict[str, Any], _key: str
) -> Verdict:
    """After the write: the ticket holds every field the update set."""
    ticket = rec.tool("zendesk.get_ticket", {"ticket_id": args["ticket_id"]})["ticket"]
    wanted = _changes(args)
    differ = {
        k: {"wanted": v, "found": ticket.get(k)}
        for k, v in wanted.items()
        if not _holds(ticket, k, v)
    }
    evidence = {"ticket_id": args["ticket_id"], "fields": sorted(wanted)}
    if differ:
        return Verdict(
            False,
            "ticket_fields_match",
            f"the ticket does not hold {', '.join(sorted(differ))}",
            dict(evidence, differ=differ),
        )
    return Verdict(True, "ticket_update_confirmed", "the ticket holds every field", evidence)
