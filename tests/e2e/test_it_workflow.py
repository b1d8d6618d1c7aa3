"""it_request end to end: a service desk posting to POST /v1/jobs on a real API process, real
workers, PostgreSQL, Redis and the sandbox's Okta, every path to its end: resets, grants,
privileged grants, offboarding, self-grants, unknown users, roles, lost writes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest

from app.jobs import lifecycle as jobs
from tests.support.env import reset_process_state
from tests.support.fleet import ApiFleet
from tests.support.processes import Proc
from tests.support.sandbox import Sandbox
from tools.okta import client as okta_api
from tools.sandbox.seed import OKTA_GROUPS, OKTA_USERS

pytestmark = pytest.mark.e2e

# The service desk submits (requester role); IT leads decide; one reviewer's key is named for
# the person it belongs to, who is also someone the desk may submit for.
KEYS = (
    "servicedesk:requester:desk-key-0001,itlead:reviewer:lead-key-0002,"
    "alice@example.com:reviewer:alice-key-0003,ops:admin:ops-key-0004"
)
DESK = {"Authorization": "Bearer desk-key-0001"}
LEAD = {"Authorization": "Bearer lead-key-0002"}
ALICE_KEY = {"Authorization": "Bearer alice-key-0003"}
OPS = {"Authorization": "Bearer ops-key-0004"}

USERS = {u.login.split("@")[0]: u for u in OKTA_USERS}
ALICE, BOB, CAROL, DAVE, ERIN = (USERS[n] for n in ("alice", "bob", "carol", "dave", "erin"))
GROUPS = {g.name: g.id for g in OKTA_GROUPS}
ENGINEERING, FINANCE, ADMINS = GROUPS["Engineering"], GROUPS["Finance"], GROUPS["Okta Admins"]


@dataclass
class Fleet(ApiFleet):
    """The running system, with this workflow's submissions."""

    reviewer: ClassVar[dict[str, str]] = LEAD
    tickets: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    def request(
        self,
        request_type: str,
        target: str,
        requester: str,
        group_id: str | None = None,
        headers: dict[str, str] = DESK,
    ) -> httpx.Response:
        """POST /v1/jobs as the service desk, for the human `requester` it vouches for."""
        body: dict[str, Any] = {
            "workflow": "it_request",
            "external_id": f"INC-{next(self.tickets)}",
            "requester": requester,
            "input": {
                "request_type": request_type,
                "target_login": target,
                "justification": "ticket approved by the user's manager",
                **({"group_id": group_id} if group_id else {}),
            },
        }
        return httpx.post(f"{self.api}/v1/jobs", json=body, headers=headers)

    def submit(self, request_type: str, target: str, requester: str, **kw: Any) -> str:
        resp = self.request(request_type, target, requester, **kw)
        assert resp.status_code == 202, resp.text
        return str(resp.json()["job_id"])

    def completed(self, job_id: str) -> dict[str, Any]:
        detail = self.settle(job_id)
        assert detail["status"] == jobs.COMPLETED, detail["escalation"]
        assert not detail["incident"]
        return detail

    def writes(self) -> list[tuple[str, str]]:
        """The Okta writes that changed state: (method, path), oldest first."""
        return [(w["method"], w["path"]) for w in self.sandbox.applied("okta")]


def status_of(user: Any) -> str:
    """The user's Okta status now, read through the Okta adapter."""
    return str(okta_api.get_user(user.id)["status"])


def groups_of(user: Any) -> set[str]:
    return {g["id"] for g in okta_api.user_groups(user.id)}


RESET = "/api/v1/users/{}/lifecycle/reset_password"
SUSPEND = "/api/v1/users/{}/lifecycle/suspend"
MEMBER = "/api/v1/groups/{}/users/{}"


@pytest.fixture
def fleet(
    pg_env: dict[str, str],
    sandbox: Sandbox,
    start_worker: Callable[..., Proc],
    start_api: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    """API, one worker and the sandbox, with the service desk's and reviewers' keys."""
    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    reset_process_state()
    start_worker()
    return Fleet(start_api(), sandbox)


# --- password resets ------------------------------------------------------------------------


def test_own_password_reset_completes_with_one_okta_write(fleet: Fleet) -> None:
    # Given alice asks the desk to reset her own password
    job_id = fleet.submit("password_reset", ALICE.login, requester=ALICE.login)

    # Then it runs on its own: one reset, alice in RECOVERY, confirmed by read-back
    detail = fleet.completed(job_id)
    assert [(s["tool"], s["args"]) for s in detail["steps"]] == [
        ("okta.reset_password", {"user_id": ALICE.id})
    ]
    assert fleet.writes() == [("POST", RESET.format(ALICE.id))]
    assert status_of(ALICE) == "RECOVERY"


def test_reset_of_someone_elses_password_fails_verification(fleet: Fleet) -> None:
    # Given bob asks for alice's password to be reset
    job_id = fleet.submit("password_reset", ALICE.login, requester=BOB.login)

    # Then the verifier's rule refuses (run by the planner already, so no plan is made that is
    # certain to fail): a reset is only ever for the person asking
    escalation = fleet.escalated(job_id, "verification_failed")
    assert escalation["evidence"]["rule"] == "requester_is_the_user"
    assert escalation["evidence"]["tool"] == "okta.reset_password"
    assert fleet.sandbox.ledger(system="okta") == []
    assert status_of(ALICE) == "ACTIVE"


# --- group access ---------------------------------------------------------------------------


def test_ordinary_group_grant_completes_and_the_membership_exists(fleet: Fleet) -> None:
    # Given alice asks for bob to join Engineering (not privileged)
    job_id = fleet.submit("group_access", BOB.login, requester=ALICE.login, group_id=ENGINEERING)

    # Then it runs on its own, once
    detail = fleet.completed(job_id)
    assert [(s["tool"], s["args"]) for s in detail["steps"]] == [
        ("okta.add_to_group", {"user_id": BOB.id, "group_id": ENGINEERING})
    ]
    assert fleet.writes() == [("PUT", MEMBER.format(ENGINEERING, BOB.id))]
    assert groups_of(BOB) == {FINANCE, ENGINEERING}


def test_privileged_grant_waits_for_approval_then_runs(fleet: Fleet) -> None:
    # Given alice asks for bob to join Okta Admins (privileged)
    job_id = fleet.submit("group_access", BOB.login, requester=ALICE.login, group_id=ADMINS)

    # Then policy sends it to a person first, with the rule and the group, and nothing runs
    escalation = fleet.escalated(job_id, "approval_required")
    evidence = escalation["evidence"]
    assert (evidence["tool"], evidence["rule"], evidence["group_id"]) == (
        "okta.add_to_group",
        "privileged_value",
        ADMINS,
    )
    assert fleet.sandbox.ledger(system="okta") == []

    # When an IT lead approves
    resp = fleet.decide(escalation, {"decision": "approve", "note": "on-call rotation"})
    assert resp.status_code == 200, resp.text

    # Then the grant runs once and bob is an Okta admin
    fleet.completed(job_id)
    assert fleet.writes() == [("PUT", MEMBER.format(ADMINS, BOB.id))]
    assert ADMINS in groups_of(BOB)


def test_privileged_self_grant_is_never_executed(fleet: Fleet) -> None:
    # Given dave asks for himself to join Okta Admins
    job_id = fleet.submit("group_access", DAVE.login, requester=DAVE.login, group_id=ADMINS)

    # Then no plan is made that the verifier would refuse: nobody grants themselves a
    # privileged group, so it fails verification with that rule at planning and no reviewer
    # is asked to approve a grant that could never run (verifiers/okta/access.py still refuses it
    # if a model tier proposes it: tests/unit/verifiers/test_okta_access.py)
    refused = fleet.escalated(job_id, "verification_failed")
    assert refused["evidence"]["rule"] == "no_privileged_self_grant"
    assert fleet.sandbox.ledger(system="okta") == []
    assert ADMINS not in groups_of(DAVE)


# --- offboarding ----------------------------------------------------------------------------


def test_offboarding_waits_for_approval_then_suspends(fleet: Fleet) -> None:
    # Given alice (erin's manager) asks for erin to be offboarded
    job_id = fleet.submit("offboarding", ERIN.login, requester=ALICE.login)

    # Then a suspension always waits for a person
    escalation = fleet.escalated(job_id, "approval_required")
    assert (escalation["evidence"]["tool"], escalation["evidence"]["rule"]) == (
        "okta.suspend_user",
        "irreversible_needs_approval",
    )
    assert fleet.sandbox.ledger(system="okta") == []
    assert status_of(ERIN) == "ACTIVE"

    # When an IT lead approves, the account is suspended, once
    assert fleet.decide(escalation, {"decision": "approve"}).status_code == 200
    fleet.completed(job_id)
    assert fleet.writes() == [("POST", SUSPEND.format(ERIN.id))]
    assert status_of(ERIN) == "SUSPENDED"


def test_offboarding_an_already_suspended_user_is_planner_requested(fleet: Fleet) -> None:
    # Given carol is already SUSPENDED
    job_id = fleet.submit("offboarding", CAROL.login, requester=ALICE.login)

    # Then the planner says there is nothing to do and asks a person
    escalation = fleet.escalated(job_id, "planner_requested")
    assert escalation["detail"] == "already suspended: nothing to do"
    assert fleet.job(job_id)["steps"] == []
    assert fleet.sandbox.ledger(system="okta") == []


def test_unknown_target_login_goes_to_a_person_without_a_model(fleet: Fleet) -> None:
    # Given a request about a login Okta does not know (and no model endpoint configured)
    job_id = fleet.submit("password_reset", "nobody@example.com", requester="nobody@example.com")

    # Then the rules cannot plan it and it goes to a person as no_model
    escalation = fleet.escalated(job_id, "no_model")
    assert escalation["evidence"] == {"workflow": "it_request"}
    assert fleet.sandbox.ledger(system="okta") == []


# --- who may ask, who may decide ------------------------------------------------------------


def test_only_requester_keys_may_start_a_request(fleet: Fleet) -> None:
    # A reviewer's key is not a requester: 403, and no job
    refused = fleet.request("password_reset", ALICE.login, ALICE.login, headers=LEAD)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "requester" in refused.json()["detail"]
    # No key at all: 401
    assert fleet.request("password_reset", ALICE.login, ALICE.login, headers={}).status_code == 401
    # An admin key may (policy requester_roles: requester, admin)
    assert fleet.request("password_reset", ALICE.login, ALICE.login, headers=OPS).status_code == 202
    listed = httpx.get(f"{fleet.api}/v1/jobs", headers=LEAD).json()
    assert [j["external_id"] for j in listed] == ["INC-1003"]


def test_the_requester_cannot_approve_their_own_request(fleet: Fleet) -> None:
    # Given alice asks for erin's offboarding, and alice is also a reviewer with her own key
    job_id = fleet.submit("offboarding", ERIN.login, requester=ALICE.login)
    escalation = fleet.escalated(job_id, "approval_required")

    # When alice tries to approve her own request, she is refused (separation of duties)
    resp = fleet.decide(escalation, {"decision": "approve"}, headers=ALICE_KEY)
    assert resp.status_code == 403, resp.text
    assert "separation of duties" in resp.json()["detail"]
    assert fleet.job(job_id)["status"] == jobs.ESCALATED
    assert fleet.sandbox.ledger(system="okta") == []

    # And another reviewer may
    assert fleet.decide(escalation, {"decision": "approve"}).status_code == 200
    fleet.completed(job_id)
    assert status_of(ERIN) == "SUSPENDED"


# --- a write Okta acknowledged but did not keep ---------------------------------------------


def test_a_lost_reset_is_an_outcome_mismatch_and_an_incident(fleet: Fleet) -> None:
    # Given Okta acknowledges every write without keeping it
    fleet.faults(system="okta", lost_write_rate=1.0)

    # When alice asks for her own password reset
    job_id = fleet.submit("password_reset", ALICE.login, requester=ALICE.login)

    # Then the read-back finds her still ACTIVE: outcome_mismatch, flagged as an incident
    escalation = fleet.escalated(job_id, "outcome_mismatch")
    evidence = escalation["evidence"]
    assert (evidence["tool"], evidence["rule"]) == ("okta.reset_password", "user_in_recovery")
    assert (evidence["user_id"], evidence["status"]) == (ALICE.id, "ACTIVE")
    assert fleet.job(job_id)["incident"] is True
    listed = httpx.get(f"{fleet.api}/v1/jobs", params={"incident": "true"}, headers=OPS).json()
    assert [j["id"] for j in listed] == [job_id]
    # And the ledger shows the write received, answered, and not applied
    [write] = fleet.sandbox.ledger(system="okta")
    assert (write["path"], write["outcome"], write["fault"]) == (
        RESET.format(ALICE.id),
        "noop",
        "lost_write",
    )
    assert fleet.writes() == []
    assert status_of(ALICE) == "ACTIVE"
