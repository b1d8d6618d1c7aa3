"""verifiers/okta/access.py: each Okta rule on hand-built facts, then the chains on the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from app.controls.calls import CallRecorder
from tests.support.sandbox import Sandbox
from tools.sandbox import seed
from verifiers.base import Facts, Verdict, run_chain
from verifiers.chains import CHAINS
from verifiers.okta import access
from verifiers.okta.access import login_ref

USERS = {u.login.split("@")[0]: u for u in seed.OKTA_USERS}  # alice, bob, carol, dave, erin
GROUP = {g.name: g.id for g in seed.OKTA_GROUPS}
DAVE, ADMINS, VPN = USERS["dave"], GROUP["Okta Admins"], GROUP["VPN Users"]
MANAGER = "manager@corp.example"

# The repository's config/ (privileged groups in policy.yaml).
pytestmark = pytest.mark.usefixtures("clean_env")


def okta_user(name: str, status: str | None = None) -> dict[str, Any]:
    """An Okta User object (the fields the rules read)."""
    u = USERS[name]
    return {
        "id": u.id,
        "status": status or u.status,
        "profile": {"login": u.login, "email": u.login},
    }


def facts(
    tool: str = "okta.add_to_group",
    *,
    user: Any = "dave",
    target_login: str | None = DAVE.login,
    target: Any = "dave",
    group_id: str = VPN,
    job_group: str | None = VPN,
    requester: str = MANAGER,
    approved: bool = False,
    status: str | None = None,
) -> Facts:
    args: dict[str, Any] = {"user_id": DAVE.id}
    job_input: dict[str, Any] = {"target_login": target_login}
    data: dict[str, Any] = {
        "user": okta_user(user, status) if isinstance(user, str) else user,
        "target": okta_user(target) if isinstance(target, str) else target,
    }
    if tool == "okta.add_to_group":
        args["group_id"], job_input["group_id"] = group_id, job_group
        data["group"] = {"id": group_id, "profile": {"name": "a group"}}
    return Facts(
        tool, args, job_input, data, workflow="it_request", requester=requester, approved=approved
    )


def test_a_plain_grant_passes_every_rule_in_order() -> None:
    failure, verdicts = run_chain(access.GRANT_RULES, facts())

    assert failure is None
    assert [v.rule for v in verdicts] == [
        "user_active",
        "user_is_the_target",
        "group_exists",
        "group_is_the_jobs",
        "not_already_member",
        "privileged_group_approved",
        "no_privileged_self_grant",
    ]


def test_reset_and_suspend_rules_in_order() -> None:
    reset = facts("okta.reset_password", requester=DAVE.login)
    assert [v.rule for v in run_chain(access.RESET_RULES, reset)[1]] == [
        "user_active",
        "user_is_the_target",
        "requester_is_the_user",
    ]
    suspend = facts("okta.suspend_user")
    suspend.job_input["request_type"] = "offboarding"
    assert [v.rule for v in run_chain(access.SUSPEND_RULES, suspend)[1]] == [
        "user_active",
        "user_is_the_target",
        "suspension_reason_stated",
    ]


def test_a_suspension_needs_an_offboarding_request() -> None:
    suspend = facts("okta.suspend_user")
    suspend.job_input["request_type"] = "group_access"
    failure, _ = run_chain(access.SUSPEND_RULES, suspend)
    assert failure is not None and failure.rule == "suspension_reason_stated"


def test_a_member_already_fails_not_already_member() -> None:
    grant = facts()
    grant.data["user_groups"] = [{"id": VPN}]
    failure, _ = run_chain(access.GRANT_RULES, grant)
    assert failure is not None and failure.rule == "not_already_member"


@pytest.mark.parametrize(
    ("tool", "status", "ok"),
    [
        ("okta.reset_password", "LOCKED_OUT", True),
        ("okta.reset_password", "PASSWORD_EXPIRED", True),
        ("okta.reset_password", "RECOVERY", True),
        ("okta.reset_password", "STAGED", False),
        ("okta.add_to_group", "LOCKED_OUT", True),
        ("okta.suspend_user", "LOCKED_OUT", False),
        ("okta.suspend_user", "RECOVERY", False),
        ("okta.suspend_user", "ACTIVE", True),
    ],
)
def test_user_active_follows_the_okta_state_table(tool: str, status: str, ok: bool) -> None:
    assert access.UserActive().check(facts(tool, status=status)).ok is ok


@pytest.mark.parametrize("status", ["SUSPENDED", "DEPROVISIONED", "PROVISIONED", "STAGED"])
def test_user_not_active_fails(status: str) -> None:
    verdict = access.UserActive().check(facts(status=status))

    assert not verdict.ok and verdict.evidence == {"user_id": DAVE.id, "status": status}


def test_missing_user_fails_user_active() -> None:
    verdict = access.UserActive().check(facts(user=None))

    assert not verdict.ok and verdict.evidence == {"user_id": DAVE.id}


def test_target_login_resolving_to_another_user_fails() -> None:
    verdict = access.UserIsTheTarget().check(facts(target_login=USERS["erin"].login, target="erin"))

    assert not verdict.ok
    assert verdict.evidence == {
        "user_id": DAVE.id,
        "target_ref": login_ref(USERS["erin"].login),
        "target_user_id": USERS["erin"].id,
    }
    assert "@" not in repr(verdict)


def test_target_login_compares_case_insensitively() -> None:
    assert access.UserIsTheTarget().check(facts(target_login="Dave@Corp.Example")).ok


@pytest.mark.parametrize("target_login", ["dave", None, ""])
def test_short_or_missing_target_login_fails(target_login: str | None) -> None:
    # Okta resolves "dave" to dave@corp.example; the job must name the login in full.
    verdict = access.UserIsTheTarget().check(facts(target_login=target_login))

    assert not verdict.ok


def test_unresolved_target_fails() -> None:
    assert not access.UserIsTheTarget().check(facts(target=None)).ok


@pytest.mark.parametrize(
    ("requester", "ok"),
    [(DAVE.login, True), ("DAVE@corp.example", True), (MANAGER, False), ("", False)],
)
def test_password_reset_only_for_the_requester_themselves(requester: str, ok: bool) -> None:
    verdict = access.RequesterIsTheUser().check(facts("okta.reset_password", requester=requester))

    assert verdict.ok is ok
    assert verdict.evidence == {
        "requester_ref": login_ref(requester),
        "target_ref": login_ref(DAVE.login),
    }


def test_missing_group_fails() -> None:
    f = facts()
    f.data["group"] = None

    verdict = access.GroupExists().check(f)

    assert not verdict.ok and verdict.evidence == {"group_id": VPN}


def test_group_other_than_the_jobs_fails() -> None:
    verdict = access.GroupIsTheJobs().check(facts(group_id=ADMINS, job_group=VPN))

    assert not verdict.ok and verdict.evidence == {"expected": VPN, "asked": ADMINS}


@pytest.mark.parametrize(
    ("group_id", "approved", "ok"),
    [(ADMINS, False, False), (ADMINS, True, True), (VPN, False, True)],
)
def test_privileged_group_needs_an_approval(group_id: str, approved: bool, ok: bool) -> None:
    f = facts(group_id=group_id, job_group=group_id, approved=approved)

    verdict = access.PrivilegedGroupApproved().check(f)

    assert verdict.ok is ok
    assert verdict.evidence == {
        "group_id": group_id,
        "privileged": group_id == ADMINS,
        "approved": approved,
    }


def test_privileged_self_grant_fails_even_when_approved() -> None:
    f = facts(group_id=ADMINS, job_group=ADMINS, approved=True, requester="Dave@Corp.Example")

    verdict = access.NoPrivilegedSelfGrant().check(f)

    assert not verdict.ok
    assert verdict.evidence["requester_ref"] == login_ref(DAVE.login)


def test_asking_for_an_ordinary_group_for_oneself_passes() -> None:
    assert access.NoPrivilegedSelfGrant().check(facts(requester=DAVE.login)).ok


# --- against the sandbox --------------------------------------------------------------------


@pytest.fixture
def rec(pg_env: dict[str, str], sandbox: Sandbox) -> CallRecorder:
    """A recorder against a fresh sandbox, with real PostgreSQL and Redis behind the gates."""
    return CallRecorder(stage="verify_proposal", workflow="it_request")


def verify(
    rec: CallRecorder, tool: str, args: dict[str, Any], job_input: dict[str, Any], **kw: Any
) -> tuple[Verdict | None, list[Verdict]]:
    f = Facts(tool, args, job_input, workflow="it_request", **kw)
    chain = CHAINS[tool]
    chain.gather(rec, f)
    return run_chain(chain.rules, f)


def read_back(rec: CallRecorder, tool: str, args: dict[str, Any]) -> Verdict:
    return CHAINS[tool].read_back(rec, args, {}, "step-key")


def test_own_password_reset_passes_then_reads_back(rec: CallRecorder) -> None:
    alice = USERS["alice"]
    args = {"user_id": alice.id}
    failure, verdicts = verify(
        rec, "okta.reset_password", args, {"target_login": alice.login}, requester=alice.login
    )
    assert failure is None and len(verdicts) == 3
    before = read_back(rec, "okta.reset_password", args)
    assert not before.ok and before.evidence == {"user_id": alice.id, "status": "ACTIVE"}

    rec.tool("okta.reset_password", args, key="reset-alice")

    after = read_back(rec, "okta.reset_password", args)
    assert after.ok and after.evidence["status"] == "RECOVERY"


def test_reset_for_a_suspended_user_fails_user_active(rec: CallRecorder) -> None:
    carol = USERS["carol"]

    failure, _ = verify(
        rec,
        "okta.reset_password",
        {"user_id": carol.id},
        {"target_login": carol.login},
        requester=carol.login,
    )

    assert failure is not None and failure.rule == "user_active"
    assert failure.evidence == {"user_id": carol.id, "status": "SUSPENDED"}


def test_reset_for_someone_else_fails(rec: CallRecorder) -> None:
    alice = USERS["alice"]

    failure, _ = verify(
        rec,
        "okta.reset_password",
        {"user_id": alice.id},
        {"target_login": alice.login},
        requester=USERS["bob"].login,
    )

    assert failure is not None and failure.rule == "requester_is_the_user"


def test_unknown_user_id_fails_the_rule_not_the_call(rec: CallRecorder) -> None:
    failure, _ = verify(
        rec, "okta.suspend_user", {"user_id": "00u9nobodyAAAAAAA0h7"}, {"target_login": "x@y.z"}
    )

    assert failure is not None and failure.rule == "user_active"


def test_grant_of_the_jobs_group_passes_then_reads_back(rec: CallRecorder) -> None:
    args = {"user_id": DAVE.id, "group_id": VPN}
    job = {"target_login": DAVE.login, "group_id": VPN}
    assert verify(rec, "okta.add_to_group", args, job, requester=DAVE.login)[0] is None
    before = read_back(rec, "okta.add_to_group", args)
    assert not before.ok and before.rule == "user_in_group"

    rec.tool("okta.add_to_group", args, key="grant-vpn")

    assert read_back(rec, "okta.add_to_group", args).ok
    assert any(c.tool == "okta.get_group" for c in rec.calls)  # the group read is recorded


def test_privileged_grant_without_approval_fails(rec: CallRecorder) -> None:
    args = {"user_id": DAVE.id, "group_id": ADMINS}
    job = {"target_login": DAVE.login, "group_id": ADMINS}

    failure, _ = verify(rec, "okta.add_to_group", args, job, requester=MANAGER)

    assert failure is not None and failure.rule == "privileged_group_approved"
    assert failure.evidence == {"group_id": ADMINS, "privileged": True, "approved": False}


def test_approved_privileged_grant_for_another_person_passes(rec: CallRecorder) -> None:
    args = {"user_id": DAVE.id, "group_id": ADMINS}
    job = {"target_login": DAVE.login, "group_id": ADMINS}

    failure, _ = verify(rec, "okta.add_to_group", args, job, requester=MANAGER, approved=True)

    assert failure is None


def test_privileged_self_grant_fails_even_approved(rec: CallRecorder) -> None:
    args = {"user_id": DAVE.id, "group_id": ADMINS}
    job = {"target_login": DAVE.login, "group_id": ADMINS}

    failure, _ = verify(rec, "okta.add_to_group", args, job, requester=DAVE.login, approved=True)

    assert failure is not None and failure.rule == "no_privileged_self_grant"


def test_unknown_group_fails_group_exists(rec: CallRecorder) -> None:
    gone = "00g9nonexistentAA0h7"
    args = {"user_id": DAVE.id, "group_id": gone}

    failure, _ = verify(
        rec, "okta.add_to_group", args, {"target_login": DAVE.login, "group_id": gone}
    )

    assert failure is not None and failure.rule == "group_exists"
    assert failure.evidence == {"group_id": gone}


def test_suspension_of_the_named_user_passes_then_reads_back(rec: CallRecorder) -> None:
    erin = USERS["erin"]
    args = {"user_id": erin.id}
    job_input = {"target_login": erin.login, "request_type": "offboarding"}
    assert verify(rec, "okta.suspend_user", args, job_input)[0] is None
    assert read_back(rec, "okta.suspend_user", args).rule == "user_suspended"

    rec.tool("okta.suspend_user", args, key="suspend-erin")

    after = read_back(rec, "okta.suspend_user", args)
    assert after.ok and after.evidence == {"user_id": erin.id, "status": "SUSPENDED"}


def test_suspension_by_short_name_fails_the_target_rule(rec: CallRecorder) -> None:
    erin = USERS["erin"]

    failure, _ = verify(rec, "okta.suspend_user", {"user_id": erin.id}, {"target_login": "erin"})

    assert failure is not None and failure.rule == "user_is_the_target"
    assert failure.evidence["login_ref"] == login_ref(erin.login)


def test_suspension_of_another_user_fails(rec: CallRecorder) -> None:
    failure, _ = verify(
        rec, "okta.suspend_user", {"user_id": USERS["erin"].id}, {"target_login": DAVE.login}
    )

    assert failure is not None and failure.rule == "user_is_the_target"
    assert failure.evidence["target_user_id"] == DAVE.id


def test_suspended_user_fails_suspension(rec: CallRecorder) -> None:
    carol = USERS["carol"]

    failure, _ = verify(
        rec, "okta.suspend_user", {"user_id": carol.id}, {"target_login": carol.login}
    )

    assert failure is not None and failure.rule == "user_active"
