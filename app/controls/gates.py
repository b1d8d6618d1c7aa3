"""Every gate a tool call passes, in the order they run: the one list of what may stop a call.

Two places run them. The execute stage runs `BEFORE_CALL` on the plan step it is about to
call (policy, then a reviewer's approval, then the daily caps); the call recorder
(app.controls.calls) runs `AT_CALL` on every downstream call it makes, the plan's own and
the reads of planners and verifiers (kill switch, rate limit, breaker). The first gate that
stops a call decides what happens to the job: a policy block or a missing approval
escalates (EscalationRequired, with the gate's reason), the kill switch, a spent rate limit
and an open breaker park it (Parked: it waits and tries again). Nothing after the stopping
gate runs: a parked call spends no rate limit, a blocked one never reaches the kill switch.

Reads: the kill switch and the rate limit cover every catalog tool, read or write (when
Redis cannot be read they let reads through and fail writes closed); the breaker covers
every call, catalog or not (comments, group lists, SOQL). The verify stage decides the
whole plan with the same policy and approval gates before anything runs
(app.stages.verify_proposal); the execute stage decides again right before the call.

docs/architecture.md lists these gates; a test checks that list against `GATES`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from app.controls import approvals, breaker, caps, killswitch, policy, ratelimit
from app.errors import EscalationRequired, TokenRefused
from app.jobs.steps import StoredStep


@dataclass(frozen=True)
class GateCall:
    """One call at the gates: what it is, for which job and step, and how risky."""

    workflow: str
    tool: str
    args: dict[str, Any]
    # The downstream system (its breaker) and whether the call changes the world.
    system: str
    write: bool
    # Whether the call is a catalog tool (reads outside the catalog pass the breaker only).
    catalog: bool = True
    job_id: str | None = None
    requester: str = ""
    # The plan step being executed (the gates before the call need it; the recorder's
    # reads have none).
    step: StoredStep | None = None


class Gate:
    """One gate: `check` returns the policy decision as it stands after this gate (None
    where no policy decision is involved), or raises to stop the call."""

    name: ClassVar[str]
    # What the gate does with reads, as docs/architecture.md says it.
    reads: ClassVar[str]

    def applies(self, call: GateCall) -> bool:
        return True

    def check(self, call: GateCall, decision: policy.Decision | None) -> policy.Decision | None:
        raise NotImplementedError


def _step(call: GateCall) -> StoredStep:
    if call.step is None:
        raise ValueError(f"the {call.tool} call is not a plan step: no gate before it applies")
    return call.step


def approved(job_id: str, step: StoredStep, decision: policy.Decision) -> policy.Decision:
    """The decision for a step that needs approval: allowed if its token holds for this exact
    action under the policy in force now, else EscalationRequired("approval_required", or
    "shadow_proposal" for a shadow rollout's proposal)."""
    evidence = {
        "tool": step.tool,
        "step_id": step.step_id,
        "revision": step.revision,
        "rule": decision.rule,
        "policy_version": decision.policy_version,
        **decision.evidence,
    }
    try:
        ok = approvals.authorize(
            step.approval, approvals.action_hash(job_id, step, decision.policy_version)
        )
    except TokenRefused as exc:
        if step.approval is not None:
            evidence["token_refused"] = str(exc)
        reason = "shadow_proposal" if decision.rule == policy.SHADOW_RULE else "approval_required"
        raise EscalationRequired(reason, decision.detail, evidence) from exc
    return replace(
        decision,
        outcome="allow",
        rule="approved",
        detail=f"approved by {', '.join(ok.approvers)} ({decision.detail})",
        grant={"approval_id": ok.approval_id, "approvers": ok.approvers, "key_id": ok.key_id},
    )


class PolicyGate(Gate):
    """config/policy.yaml's rules (app.controls.policy.RULES): a block escalates
    `policy_blocked`; `approval_required` goes on to the approval gate."""

    name = "policy"
    reads = "decides plan steps that read, as any step"

    def check(self, call: GateCall, decision: policy.Decision | None) -> policy.Decision:
        step = _step(call)
        decided = policy.decide(call.workflow, call.tool, call.args, call.job_id)
        if decided.outcome == "block":
            raise EscalationRequired(
                "policy_blocked",
                decided.detail,
                {
                    "tool": call.tool,
                    "step_id": step.step_id,
                    "rule": decided.rule,
                    "policy_version": decided.policy_version,
                },
            )
        return decided


class ApprovalGate(Gate):
    """A call the policy sends to a person runs only with a reviewer's token for this exact
    action (arguments, step, revision, policy version); otherwise it escalates."""

    name = "approval"
    reads = "a read never needs approval"

    def check(self, call: GateCall, decision: policy.Decision | None) -> policy.Decision | None:
        if decision is None or decision.outcome != "approval_required":
            return decision
        assert call.job_id is not None
        return approved(call.job_id, _step(call), decision)


class DailyCapsGate(Gate):
    """An autonomous action's amount is reserved against its daily caps (per customer, for the
    fleet); over a cap it needs a reviewer's approval like any action over its autonomy."""

    name = "daily_caps"
    reads = "a read spends nothing"

    def check(self, call: GateCall, decision: policy.Decision | None) -> policy.Decision | None:
        if decision is None or decision.outcome != "allow" or decision.rule == "approved":
            return decision  # a reviewer approved this exact action: no cap applies to it
        tool_policy = policy.workflow_policy(call.workflow)[0].tools.get(call.tool)
        amount = call.args.get("amount")
        if tool_policy is None or tool_policy.daily_caps is None or not isinstance(amount, int):
            return decision
        step = _step(call)
        currency = str(call.args.get("currency", "")).lower()
        found = caps.scopes_for(
            call.workflow, call.tool, call.requester, tool_policy.daily_caps, currency
        )
        over = caps.reserve(step.idempotency_key, found, currency, amount)
        if over is None:
            return decision
        needs = replace(
            decision,
            outcome="approval_required",
            rule=over.rule,
            detail=f"{call.tool} of {amount} {currency} would take {over.scope} past its daily "
            f"cap of {over.cap} (used {over.used})",
            evidence={"cap": over.cap, "used": over.used, "scope": over.scope, "amount": amount},
        )
        assert call.job_id is not None
        return approved(call.job_id, step, needs)


class KillSwitchGate(Gate):
    """An engaged switch (global, the workflow or the tool; config/killswitch.yaml or the
    runtime override) parks the job until a person releases it."""

    name = "kill_switch"
    reads = "stops catalog reads too; unreadable, it lets reads through and parks writes"

    def applies(self, call: GateCall) -> bool:
        return call.catalog

    def check(self, call: GateCall, decision: policy.Decision | None) -> policy.Decision | None:
        killswitch.check(call.workflow, call.tool, write=call.write)
        return decision


class RateLimitGate(Gate):
    """The tool's fleet-wide calls per second (config/policy.yaml `rate_limits`); over it the
    job parks until the next second."""

    name = "rate_limit"
    reads = "counts catalog reads too; unreadable, it lets reads through and parks writes"

    def applies(self, call: GateCall) -> bool:
        return call.catalog

    def check(self, call: GateCall, decision: policy.Decision | None) -> policy.Decision | None:
        ratelimit.acquire(call.tool, policy.rate_limit(call.tool), write=call.write)
        return decision


class BreakerGate(Gate):
    """The downstream system's circuit breaker (fleet-wide, in Redis): open, the job parks
    until it half-opens; the call's outcome is counted after it returns."""

    name = "breaker"
    reads = "covers every call; unreadable, it lets reads through and parks writes"

    def check(self, call: GateCall, decision: policy.Decision | None) -> policy.Decision | None:
        breaker.before_call(call.system, write=call.write)
        return decision


# The gates the execute stage runs on a plan step, in order, before it calls the tool.
BEFORE_CALL: list[Gate] = [PolicyGate(), ApprovalGate(), DailyCapsGate()]
# The gates the call recorder runs on every downstream call, in order, right before it.
AT_CALL: list[Gate] = [KillSwitchGate(), RateLimitGate(), BreakerGate()]
# All of them, in the order a plan step meets them.
GATES: list[Gate] = BEFORE_CALL + AT_CALL


def run(gates: list[Gate], call: GateCall) -> policy.Decision | None:
    """Pass `call` through `gates` in order; the policy decision they leave (None if none of
    them decides one). The first gate that stops the call raises."""
    decision: policy.Decision | None = None
    for gate in gates:
        if gate.applies(call):
            decision = gate.check(call, decision)
    return decision
