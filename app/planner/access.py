"""it_request in the rules tier: a password reset, a group grant or an offboarding in Okta.

The context (read by `app.planning.gather_context`) holds the target user, the requester's
Okta user and the target's groups. The rules plan whoever asks: whether the requester may
ask is for the verifiers and the policy (privileged groups and suspensions need a human).
"""

from __future__ import annotations

from typing import Any

from app.plan import Plan, PlanEscalation, Step

WORKFLOW = "it_request"
# Okta statuses of an activated account (a reset or a grant makes sense for these).
ACTIVE_STATES = frozenset({"ACTIVE", "RECOVERY", "LOCKED_OUT", "PASSWORD_EXPIRED"})
_JUSTIFICATION_SHOWN = 200


def plan_it_request(context: dict[str, Any]) -> Plan | None:
    """A plan for the request on an existing Okta user; None when the target does not exist."""
    target = context.get("target")
    job_input = context.get("input") or {}
    if not target or not target.get("id"):
        return None
    request = _Request(target, job_input, context.get("requester_user"))
    kind = job_input.get("request_type")
    if kind == "password_reset":
        return request.password_reset()
    if kind == "group_access":
        return request.group_access(context.get("target_groups") or [])
    if kind == "offboarding":
        return request.offboarding()
    return None


class _Request:
    """One request about one target user.

    Summaries and evidence name users by Okta id (they go to the audit chain); only the
    rationale, which a reviewer reads, shows the login.
    """

    def __init__(
        self, target: dict[str, Any], job_input: dict[str, Any], requester: dict[str, Any] | None
    ) -> None:
        self.target = target
        self.input = job_input
        self.user_id = str(target["id"])
        self.status = str(target.get("status") or "")
        self.login = str((target.get("profile") or {}).get("login") or self.user_id)
        self.evidence = [f"okta-user:{self.user_id}"]
        if requester and requester.get("id"):
            self.evidence.append(f"requester:okta-user:{requester['id']}")
        self.who = (
            "The requester asks for their own account."
            if requester and requester.get("id") == self.user_id
            else "The requester asks for another user's account."
            if requester
            else "The requester is not a known Okta user."
        )

    def escalate(self, summary: str, reason: str) -> Plan:
        return Plan(
            workflow=WORKFLOW,
            summary=summary,
            confidence=0.95,
            escalate=PlanEscalation(reason=reason),
        )

    def one_step(self, summary: str, step: Step) -> Plan:
        return Plan(workflow=WORKFLOW, summary=summary, confidence=0.95, steps=[step])

    def not_active(self, what: str) -> Plan | None:
        if self.status in ACTIVE_STATES:
            return None
        return self.escalate(
            f"Cannot {what} for Okta user {self.user_id}: the account is {self.status}",
            f"the account is {self.status}, not active",
        )

    def password_reset(self) -> Plan:
        refused = self.not_active("reset the password")
        if refused is not None:
            return refused
        return self.one_step(
            f"Reset the Okta password of user {self.user_id}",
            Step(
                id="reset",
                tool="okta.reset_password",
                args={"user_id": self.user_id},
                rationale=(
                    f"A password reset is asked for {self.login} ({self.status}); Okta emails "
                    f"the user the reset link. {self.who}"
                ),
                evidence=[*self.evidence, "policy:access#password-resets"],
            ),
        )

    def group_access(self, groups: list[dict[str, Any]]) -> Plan | None:
        group_id = self.input.get("group_id")
        if not group_id:
            return None
        member = next((g for g in groups if g.get("id") == group_id), None)
        if member is not None:
            name = (member.get("profile") or {}).get("name") or group_id
            return self.escalate(
                f"Okta user {self.user_id} is already in group {name}",
                "already a member: nothing to do",
            )
        refused = self.not_active("add to a group")
        if refused is not None:
            return refused
        return self.one_step(
            f"Add Okta user {self.user_id} to group {group_id}",
            Step(
                id="grant",
                tool="okta.add_to_group",
                args={"user_id": self.user_id, "group_id": group_id},
                rationale=(
                    f"Access to group {group_id} is asked for {self.login}, who is not a member "
                    f"yet. {self.who}{self._justification()}"
                ),
                evidence=[*self.evidence, f"group:{group_id}", "policy:access#group-membership"],
            ),
        )

    def offboarding(self) -> Plan:
        if self.status == "SUSPENDED":
            return self.escalate(
                f"Okta user {self.user_id} is already suspended", "already suspended: nothing to do"
            )
        if self.status != "ACTIVE":
            # Okta suspends ACTIVE users only; deprovisioning and the rest are a person's call.
            return self.escalate(
                f"Cannot suspend Okta user {self.user_id}: the account is {self.status}",
                f"the account is {self.status}: Okta suspends only ACTIVE accounts",
            )
        return self.one_step(
            f"Suspend Okta user {self.user_id} (offboarding)",
            Step(
                id="suspend",
                tool="okta.suspend_user",
                args={"user_id": self.user_id},
                rationale=(
                    f"Offboarding is asked for {self.login}: suspend the account so it can no "
                    f"longer sign in. {self.who}{self._justification()}"
                ),
                evidence=[*self.evidence, "policy:access#suspension"],
            ),
        )

    def _justification(self) -> str:
        text = " ".join(str(self.input.get("justification") or "").split())
        if not text:
            return " No justification was given."
        if len(text) > _JUSTIFICATION_SHOWN:
            text = text[: _JUSTIFICATION_SHOWN - 1] + "…"
        return f' Stated justification: "{text}".'
