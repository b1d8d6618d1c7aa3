"""Rules for Okta writes: the right, active user; the job's group; no unapproved privilege."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from app.controls import policy
from app.errors import NotFound
from tools.okta import client as okta_api
from tools.okta.lifecycle import ALLOWED_STATUSES, allows
from verifiers.base import Facts, Reader, Rule, Verdict


def login_ref(login: str | None) -> str | None:
    """A login as evidence: a hash, so the audit can match logins without holding emails."""
    if not login:
        return None
    return "okta-login#" + hashlib.sha256(login.lower().encode()).hexdigest()[:12]


def _or_none(read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The object, or None when Okta says it does not exist (E0000007; a rule then fails)."""
    try:
        return read()
    except NotFound:
        return None


def _user(rec: Reader, id_or_login: str) -> dict[str, Any] | None:
    # okta.get_user refuses logins outside 3..255 characters: such a login names nobody.
    if not 3 <= len(id_or_login) <= 255:
        return None
    return _or_none(lambda: rec.tool("okta.get_user", {"login": id_or_login})["user"])


def gather(rec: Reader, facts: Facts) -> None:
    """Read the user the write acts on and the user the job's target login names."""
    user_id = facts.args["user_id"]
    user = _user(rec, user_id)
    # Okta also resolves logins and short names; the write addresses an id, so only an exact
    # id match is this user.
    facts.data["user"] = user if user is not None and user.get("id") == user_id else None
    target = facts.job_input.get("target_login")
    facts.data["target"] = _user(rec, target) if isinstance(target, str) else None


def gather_grant(rec: Reader, facts: Facts) -> None:
    """The user and target as in `gather`, plus the group to add the user to and the groups
    the user is in already."""
    gather(rec, facts)
    group_id = facts.args["group_id"]
    facts.data["group"] = _or_none(
        lambda: rec.read(
            "okta.get_group",
            {"group_id": group_id},
            lambda: okta_api.get_group(group_id),
        )
    )
    user_id = facts.args["user_id"]
    facts.data["user_groups"] = (
        rec.read("okta.user_groups", {"user_id": user_id}, lambda: okta_api.user_groups(user_id))
        if facts.data.get("user") is not None
        else []
    )


def _login(user: dict[str, Any] | None) -> str:
    return str(((user or {}).get("profile") or {}).get("login") or "")


def _privileged(group_id: str) -> bool:
    tool = policy.workflow_policy("it_request")[0].tools.get("okta.add_to_group")
    return tool is not None and group_id in tool.privileged_values.get("group_id", [])


def _is_self(facts: Facts) -> bool:
    """Whether the requester is the user the write acts on (by the job's or Okta's login)."""
    requester = facts.requester.strip().lower()
    logins = {
        str(facts.job_input.get("target_login") or "").lower(),
        _login(facts.data.get("user")),
    }
    return bool(requester) and requester in {x.lower() for x in logins if x}


class UserActive(Rule):
    """The user exists and is in a status the write may act on (tools/okta/lifecycle.py):
    activated for a reset or a grant, ACTIVE for a suspension."""

    name = "user_active"

    def check(self, facts: Facts) -> Verdict:
        user_id, user = facts.args["user_id"], facts.data.get("user")
        if user is None:
            return self.failed(f"no Okta user has id {user_id}", user_id=user_id)
        status = user.get("status")
        allowed = sorted(ALLOWED_STATUSES.get(facts.tool, ()))
        if not allows(facts.tool, status):
            return self.failed(
                f"user {user_id} is {status}: {facts.tool} needs {' or '.join(allowed)}",
                user_id=user_id,
                status=status,
            )
        return self.passed("user is active", user_id=user_id, status=status)


class UserIsTheTarget(Rule):
    """The user is exactly the one the job names: its target login resolves to this id."""

    name = "user_is_the_target"

    def check(self, facts: Facts) -> Verdict:
        user_id, wanted = facts.args["user_id"], facts.job_input.get("target_login")
        target = facts.data.get("target")
        evidence: dict[str, Any] = {"user_id": user_id, "target_ref": login_ref(wanted)}
        if not wanted or target is None:
            return self.failed("the job's target login is no Okta user", **evidence)
        if target.get("id") != user_id:
            return self.failed(
                f"the job's target is user {target.get('id')}, not {user_id}",
                target_user_id=target.get("id"),
                **evidence,
            )
        # Okta resolves a short name too; only the full login, as named, is the target.
        if _login(target).lower() != str(wanted).lower():
            return self.failed(
                "the job's target login is not this user's login",
                login_ref=login_ref(_login(target)),
                **evidence,
            )
        return self.passed("user is the job's target", **evidence)


class RequesterIsTheUser(Rule):
    """A password reset is only ever for the person asking."""

    name = "requester_is_the_user"

    def check(self, facts: Facts) -> Verdict:
        wanted = str(facts.job_input.get("target_login") or "")
        evidence = {"requester_ref": login_ref(facts.requester), "target_ref": login_ref(wanted)}
        if not facts.requester or facts.requester.strip().lower() != wanted.lower():
            return self.failed("the requester asks to reset someone else's password", **evidence)
        return self.passed("the requester resets their own password", **evidence)


class GroupExists(Rule):
    """The group exists in Okta."""

    name = "group_exists"

    def check(self, facts: Facts) -> Verdict:
        group_id, group = facts.args["group_id"], facts.data.get("group")
        if group is None:
            return self.failed(f"no Okta group has id {group_id}", group_id=group_id)
        name = (group.get("profile") or {}).get("name")
        return self.passed("group found", group_id=group_id, group_name=name)


class GroupIsTheJobs(Rule):
    """The group is the one the job asks for, not another one."""

    name = "group_is_the_jobs"

    def check(self, facts: Facts) -> Verdict:
        expected, asked = facts.job_input.get("group_id"), facts.args["group_id"]
        if expected != asked:
            return self.failed(
                f"the grant is for group {asked}, the job asks for {expected}",
                expected=expected,
                asked=asked,
            )
        return self.passed("group matches the job", group_id=asked)


class NotAlreadyMember(Rule):
    """A user already in the group is not added again: there is nothing to do."""

    name = "not_already_member"

    def check(self, facts: Facts) -> Verdict:
        group_id = facts.args["group_id"]
        groups = facts.data.get("user_groups") or []
        if group_id in {g.get("id") for g in groups}:
            return self.failed(
                f"user {facts.args['user_id']} is already in group {group_id}: nothing to do",
                user_id=facts.args["user_id"],
                group_id=group_id,
            )
        return self.passed("not a member yet", group_id=group_id)


class SuspensionReasonStated(Rule):
    """A suspension has a stated reason: the job is an offboarding request."""

    name = "suspension_reason_stated"

    def check(self, facts: Facts) -> Verdict:
        kind = facts.job_input.get("request_type")
        if kind != "offboarding":
            return self.failed(
                f"a suspension needs an offboarding request, this job is {kind!r}",
                request_type=kind,
            )
        return self.passed("the job asks for offboarding", request_type=kind)


class PrivilegedGroupApproved(Rule):
    """A privileged group is only granted with a human's approval of this step."""

    name = "privileged_group_approved"

    def check(self, facts: Facts) -> Verdict:
        group_id = facts.args["group_id"]
        privileged = _privileged(group_id)
        evidence = {"group_id": group_id, "privileged": privileged, "approved": facts.approved}
        if privileged and not facts.approved:
            return self.failed(f"group {group_id} is privileged and not approved", **evidence)
        return self.passed("grant needs no more approval", **evidence)


class NoPrivilegedSelfGrant(Rule):
    """Nobody grants themselves a privileged group, approved or not (separation of duties)."""

    name = "no_privileged_self_grant"

    def check(self, facts: Facts) -> Verdict:
        group_id = facts.args["group_id"]
        evidence = {
            "group_id": group_id,
            "requester_ref": login_ref(facts.requester),
            "target_ref": login_ref(facts.job_input.get("target_login")),
        }
        if _privileged(group_id) and _is_self(facts):
            return self.failed(
                "the requester asks for a privileged group for themselves", **evidence
            )
        return self.passed("not a privileged self-grant", **evidence)


RESET_RULES: list[Rule] = [UserActive(), UserIsTheTarget(), RequesterIsTheUser()]
GRANT_RULES: list[Rule] = [
    UserActive(),
    UserIsTheTarget(),
    GroupExists(),
    GroupIsTheJobs(),
    NotAlreadyMember(),
    PrivilegedGroupApproved(),
    NoPrivilegedSelfGrant(),
]
SUSPEND_RULES: list[Rule] = [UserActive(), UserIsTheTarget(), SuspensionReasonStated()]


def _status_is(rec: Reader, user_id: str, wanted: str, rule: str, done: str) -> Verdict:
    user = _user(rec, user_id)
    status = user.get("status") if user is not None else None
    evidence = {"user_id": user_id, "status": status}
    if status != wanted:
        return Verdict(False, rule, f"user {user_id} is {status}, not {wanted}", evidence)
    return Verdict(True, done, f"user is {wanted}", evidence)


def read_back_reset(
    rec: Reader, args: dict[str, Any], _result: dict[str, Any], _key: str
) -> Verdict:
    """After the write: the user is in RECOVERY (the reset email is out, the old password is not
    usable until they set a new one)."""
    return _status_is(rec, args["user_id"], "RECOVERY", "user_in_recovery", "reset_confirmed")


def read_back_suspend(
    rec: Reader, args: dict[str, Any], _result: dict[str, Any], _key: str
) -> Verdict:
    """After the write: the user is SUSPENDED."""
    return _status_is(rec, args["user_id"], "SUSPENDED", "user_suspended", "suspension_confirmed")


def read_back_grant(
    rec: Reader, args: dict[str, Any], _result: dict[str, Any], _key: str
) -> Verdict:
    """After the write: the group is among the user's groups."""
    user_id, group_id = args["user_id"], args["group_id"]
    groups = rec.read(
        "okta.user_groups",
        {"user_id": user_id},
        lambda: okta_api.user_groups(user_id),
    )
    evidence = {"user_id": user_id, "group_id": group_id}
    if group_id not in {g.get("id") for g in groups}:
        return Verdict(False, "user_in_group", "the user is not in the group", evidence)
    return Verdict(True, "membership_confirmed", "the user is in the group", evidence)
