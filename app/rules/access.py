"""it_request in the rules tier: a password reset, a group grant or an offboarding in Okta.

The context (read by `app.stages.plan.gather_context`) holds the target user, the requester's
Okta user and the target's groups. Before planning a write the rules run that write's own
verifier rules (verifiers/okta/access.py) on what the context holds, and escalate with the rule
that would refuse it: no plan is made that its verifiers are certain to reject. Whether a
human must approve (privileged groups, suspensions) is the policy's, after planning.
"""

from __future__ import annotations

from typing import Any

from app.jobs.context import PlanningContext
from app.jobs.steps import Plan, PlanEscalation, Step
from tools.okta.lifecycle import ACTIVATED
from verifiers.base import Facts, Rule, Verdict, run_chain
from verifiers.okta import access

WORKFLOW = "it_request"
# Okta statuses of an activated account: the access policy's "active" (one definition, in
# tools/okta/lifecycle.py, which the verifiers and the sandbox read too).
ACTIVE_STATES = ACTIVATED
_JUSTIFICATION_SHOWN = 200
# Rules the planner cannot judge from its context: the group's existence is read by the
# verify stage, and a privileged grant's approval is asked for after planning.
_JUDGED_LATER = frozenset({"group_exists", "privileged_group_approved"})
_CHAINS: dict[str, list[Rule]] = {
    "okta.reset_password": access.RESET_RULES,
    "okta.add_to_group": access.GRANT_RULES,
    "okta.suspend_user": access.SUSPEND_RULES,
}


def plan_it_request(context: PlanningContext) -> Plan | None:
    """A plan for the request on an existing Okta user; None when the target does not exist."""
    target = context.get("target")
    job_input = context.get("input") or {}
    if not target or not target.get("id"):
        return None
    request = _Request(target, job_input, context.get("requester_user"))
    request.requester = str(context.get("requester") or "")
    request.groups = context.get("target_groups") or []
    kind = job_input.get("request_type")
    if kind == "password_reset":
        return request.password_reset()
    if kind == "group_access":
        return request.group_access()
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
        self.requester = ""
        self.groups: list[dict[str, Any]] = []
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

    def escalate(self, summary: str, reason: str, rule: str | None = None) -> Plan:
        return Plan(
            workflow=WORKFLOW,
            summary=summary,
            confidence=0.95,
            escalate=PlanEscalation(reason=reason, rule=rule),
        )

    def refuse(self, summary: str, reason: str, tool: str, failure: Verdict) -> Plan:
        """Escalate as the verifier would (verification_failed with its rule), at planning."""
        return Plan(
            workflow=WORKFLOW,
            summary=summary,
            confidence=0.95,
            escalate=PlanEscalation(
                reason=reason,
                rule=failure.rule,
                tool=tool,
                refusal=True,
                evidence=failure.evidence,
            ),
        )

    def refused(self, tool: str, args: dict[str, Any]) -> Verdict | None:
        """The first of the write's verifier rules that fails on the context, if any."""
        facts = Facts(
            tool,
            args,
            self.input,
            {"user": self.target, "target": self.target, "user_groups": self.groups},
            workflow=WORKFLOW,
            requester=self.requester,
        )
        rules = [r for r in _CHAINS[tool] if r.name not in _JUDGED_LATER]
        failure, _ = run_chain(rules, facts)
        return failure

    def checked(self, what: str, step: Step) -> Plan | None:
        """An escalation naming the rule that would refuse the step, or None when none would."""
        failure = self.refused(step.tool, step.args)
        if failure is None:
            return None
        if failure.rule == "user_active":
            if step.tool == "okta.suspend_user" and self.status == "SUSPENDED":
                return self.escalate(
                    f"Okta user {self.user_id} is already suspended",
                    "already suspended: nothing to do",
                    failure.rule,
                )
            reason = (
                f"the account is {self.status}: Okta suspends only ACTIVE accounts"
                if step.tool == "okta.suspend_user"
                else f"the account is {self.status}, not active"
            )
            # The rules tier always said so itself (planner_requested), naming the rule now.
            return self.escalate(
                f"Cannot {what} for Okta user {self.user_id}: the account is {self.status}",
                reason,
                failure.rule,
            )
        if failure.rule == "not_already_member":
            group_id = step.args["group_id"]
            member = next((g for g in self.groups if g.get("id") == group_id), {})
            name = (member.get("profile") or {}).get("name") or group_id
            return self.escalate(
                f"Okta user {self.user_id} is already in group {name}",
                "already a member: nothing to do",
                failure.rule,
            )
        return self.refuse(
            f"Cannot {what} for Okta user {self.user_id}", failure.detail, step.tool, failure
        )

    def one_step(self, what: str, summary: str, step: Step) -> Plan:
        """The one-step plan, or the escalation its own verifier rules would give."""
        refused = self.checked(what, step)
        if refused is not None:
            return refused
        return Plan(workflow=WORKFLOW, summary=summary, confidence=0.95, steps=[step])

    def password_reset(self) -> Plan:
        step = Step(
            id="reset",
            tool="okta.reset_password",
            args={"user_id": self.user_id},
            rationale=(
                f"A password reset is asked for {self.login} ({self.status}); Okta emails "
                f"the user the reset link. {self.who}"
            ),
            evidence=[*self.evidence, "policy:access#password-resets"],
        )
        return self.one_step(
            "reset the password", f"Reset the Okta password of user {self.user_id}", step
        )

    def group_access(self) -> Plan | None:
        group_id = self.input.get("group_id")
        if not group_id:
            return None
        step = Step(
            id="grant",
            tool="okta.add_to_group",
            args={"user_id": self.user_id, "group_id": group_id},
            rationale=(
                f"Access to group {group_id} is asked for {self.login}, who is not a member "
                f"yet. {self.who}{self._justification()}"
            ),
            evidence=[*self.evidence, f"group:{group_id}", "policy:access#group-membership"],
        )
        return self.one_step(
            "add to a group", f"Add Okta user {self.user_id} to group {group_id}", step
        )

    def offboarding(self) -> Plan:
        step = Step(
            id="suspend",
            tool="okta.suspend_user",
            args={"user_id": self.user_id},
            rationale=(
                f"Offboarding is asked for {self.login}: suspend the account so it can no "
                f"longer sign in. {self.who}{self._justification()}"
            ),
            evidence=[*self.evidence, "policy:access#suspension"],
        )
        return self.one_step("suspend", f"Suspend Okta user {self.user_id} (offboarding)", step)

    def _justification(self) -> str:
        text = " ".join(str(self.input.get("justification") or "").split())
        if not text:
            return " No justification was given."
        if len(text) > _JUSTIFICATION_SHOWN:
            text = text[: _JUSTIFICATION_SHOWN - 1] + "…"
        return f' Stated justification: "{text}".'
