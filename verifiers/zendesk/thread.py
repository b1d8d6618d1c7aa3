"""Rules for stripe.refund that read the ticket's whole thread: the request still stands, and
nobody has taken the charge to a bank, a lawyer, a regulator, or called it fraud.

The description and every later comment are read (quoted history dropped, by
`app.reading.language`); a withdrawal counts when the requester wrote it, a dispute when any
end user did. Whoever planned the refund (rules or model), these rules run in its chain; the
rules tier runs them itself before planning (`stop`), so it never makes a plan they refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import PermanentError
from app.reading.language import Finding, dispute, withdrawal
from tools.zendesk import client as zendesk_api
from verifiers.base import Facts, Reader, Rule, Verdict

REQUESTER = "requester"


def read_comments(rec: Reader, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    """The ticket's comments, oldest first, each with `author_role`: "requester" for the
    ticket's requester, else the author's Zendesk role (each other author read once; one that
    cannot be read counts as an end user, so their words are weighed, not ignored)."""
    ticket_id = ticket["id"]
    comments: list[dict[str, Any]] = rec.read(
        "zendesk.list_comments",
        {"ticket_id": ticket_id},
        lambda: zendesk_api.list_comments(ticket_id),
    )
    roles: dict[Any, str] = {ticket.get("requester_id"): REQUESTER}
    for comment in comments:
        author = comment.get("author_id")
        if author not in roles:
            roles[author] = _role(rec, author)
    return [{**c, "author_role": roles[c.get("author_id")]} for c in comments]


def _role(rec: Reader, author: Any) -> str:
    try:
        user = rec.read(
            "zendesk.get_user", {"user_id": author}, lambda: zendesk_api.get_user(author)
        )
    except PermanentError:
        return "end-user"
    return str(user.get("role") or "end-user")


@dataclass(frozen=True)
class Said:
    """One piece of the thread: where it is, its words, and who wrote it."""

    where: str
    text: str
    by_requester: bool
    by_end_user: bool


def thread(ticket: dict[str, Any], comments: list[dict[str, Any]]) -> list[Said]:
    """The description (subject and body), then every later comment (the first comment is
    the description itself, as Zendesk stores it)."""
    said = [
        Said(
            "description",
            f"{ticket.get('subject') or ''}\n{ticket.get('description') or ''}",
            by_requester=True,
            by_end_user=True,
        )
    ]
    for n, comment in enumerate(comments[1:], start=1):
        role = comment.get("author_role", "end-user")
        said.append(
            Said(
                f"comment {n}",
                comment.get("body") or "",
                by_requester=role == REQUESTER,
                by_end_user=role in (REQUESTER, "end-user"),
            )
        )
    return said


class ThreadRule(Rule):
    """A rule judged on the ticket's thread (`judge`), from the facts or by the planner."""

    def check(self, facts: Facts) -> Verdict:
        ticket, comments = facts.data.get("ticket"), facts.data.get("comments")
        if ticket is None or comments is None:
            return self.failed("the ticket's thread could not be read", rule=self.name)
        return self.judge(ticket, comments)

    def judge(self, ticket: dict[str, Any], comments: list[dict[str, Any]]) -> Verdict:
        """Judge the thread."""
        raise NotImplementedError

    def found(self, detail: str, said: Said, finding: Finding) -> Verdict:
        """The failing verdict for a finding, with the sentence and where it was."""
        return self.failed(
            f'{detail} in the {said.where}: "{finding.sentence[:200]}"',
            rule=self.name,
            sentence=finding.sentence,
            where=said.where,
            kind=finding.kind,
            certain=finding.certain,
        )


class RequestNotWithdrawn(ThreadRule):
    """The requester has not taken the request back, in the description or any later comment;
    a negation the rules cannot read also fails (a person decides)."""

    name = "request_not_withdrawn"

    def judge(self, ticket: dict[str, Any], comments: list[dict[str, Any]]) -> Verdict:
        for said in thread(ticket, comments):
            finding = withdrawal(said.text) if said.by_requester else None
            if finding is not None:
                how = "took the request back" if finding.certain else "may have taken it back"
                return self.found(f"the requester {how}", said, finding)
        return self.passed("the request stands", comments=max(len(comments) - 1, 0))


class NoDisputeInThread(ThreadRule):
    """No end user's words in the thread bring a chargeback, legal action, a regulator or
    fraud into it (config/policies/refunds.md sends those to a human)."""

    name = "no_dispute_in_thread"

    def judge(self, ticket: dict[str, Any], comments: list[dict[str, Any]]) -> Verdict:
        for said in thread(ticket, comments):
            finding = dispute(said.text) if said.by_end_user else None
            if finding is not None:
                return self.found(f"a {finding.kind} is raised", said, finding)
        return self.passed("no dispute in the thread", comments=max(len(comments) - 1, 0))


THREAD_RULES: list[ThreadRule] = [RequestNotWithdrawn(), NoDisputeInThread()]


def stop(ticket: dict[str, Any], comments: list[dict[str, Any]]) -> Verdict | None:
    """The first thread rule that fails for this thread, or None."""
    for rule in THREAD_RULES:
        verdict = rule.judge(ticket, comments)
        if not verdict.ok:
            return verdict
    return None
