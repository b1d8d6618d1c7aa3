"""Policy as code: load config/policy.yaml and decide, rule by rule, whether a call may run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.audit.chain import canonical_json, sha256_hex
from app.core import configfile
from app.errors import PermanentError
from tools.base import Risk
from tools.catalog import get_tool


class Autonomy(BaseModel):
    """An explicit grant to run an irreversible tool without approval, within caps."""

    model_config = ConfigDict(extra="forbid")

    max_amount: dict[str, int] = Field(default_factory=dict)


class DailyCaps(BaseModel):
    """Daily caps on autonomous spending, per customer and fleet-wide."""

    model_config = ConfigDict(extra="forbid")

    per_customer: dict[str, int] = Field(default_factory=dict)
    fleet: dict[str, int] = Field(default_factory=dict)


class ToolPolicy(BaseModel):
    """Per-tool policy inside a workflow."""

    model_config = ConfigDict(extra="forbid")

    autonomy: Autonomy | None = None
    allowed_reasons: list[str] | None = None
    public_requires_approval: bool = False
    # Argument allowlists, e.g. {"group_id": [...]} for okta.add_to_group.
    allowed_values: dict[str, list[Any]] = Field(default_factory=dict)
    # Argument values that always need a human's approval (privileged Okta groups).
    privileged_values: dict[str, list[Any]] = Field(default_factory=dict)
    # For tools that write a record's `fields`: the fields the agent may set at all, and
    # for some of them the only values it may set (a status change to Approved goes through
    # salesforce.approve_payment and its approval, never through a field update).
    allowed_fields: list[str] | None = None
    field_values: dict[str, list[Any]] = Field(default_factory=dict)
    # Writes of more than this (minor units per currency, the `amount` argument) need approval.
    approval_above: dict[str, int] = Field(default_factory=dict)
    # Above these amounts (minor units per currency) two different reviewers must approve.
    two_person_above: dict[str, int] = Field(default_factory=dict)
    # What autonomous calls may spend per UTC day (minor units per currency), per customer
    # (the job's requester) and for the whole fleet; beyond it, a human approves.
    daily_caps: DailyCaps | None = None


class WorkflowPolicy(BaseModel):
    """Everything the policy says about one workflow."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["shadow", "canary", "live"] = "shadow"
    # In `canary`, this share of jobs (stable by job id) runs live; the rest in shadow.
    canary_percent: int = Field(0, ge=0, le=100)
    requester_roles: list[str] = Field(default_factory=lambda: ["requester", "admin"])
    allowed_tools: list[str]
    tools: dict[str, ToolPolicy] = Field(default_factory=dict)
    # Named lists the workflow's verifiers check against, e.g. {"vendors": [...]}.
    allowlists: dict[str, list[str]] = Field(default_factory=dict)


class RateLimit(BaseModel):
    """A fleet-wide limit on calls to one tool."""

    model_config = ConfigDict(extra="forbid")

    per_second: int = Field(gt=0)


class PolicyFile(BaseModel):
    """The policy file's top level."""

    model_config = ConfigDict(extra="forbid")

    workflows: dict[str, WorkflowPolicy]
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)


def rate_limit(tool: str) -> int | None:
    """Calls per second the whole fleet may make to a tool (None: no limit)."""
    limit = current_policy().rate_limits.get(tool)
    return limit.per_second if limit else None


@dataclass(frozen=True)
class Decision:
    """The verdict on one tool call, with the rule that decided it."""

    outcome: Literal["allow", "approval_required", "block"]
    rule: str
    detail: str
    policy_version: str
    grant: dict[str, Any] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def current_policy() -> PolicyFile:
    """The policy in force; re-read when the file changes, so edits need no restart."""
    return configfile.current("policy.yaml", PolicyFile)


def workflow_policy(workflow: str) -> tuple[WorkflowPolicy, str]:
    """The workflow's policy and its version (hash of that section only)."""
    policy = current_policy().workflows.get(workflow)
    if policy is None:
        raise PermanentError(f"no policy for workflow {workflow!r}")
    return policy, sha256_hex(canonical_json(policy.model_dump()))[:16]


SHADOW_RULE = "rollout_shadow"

# Every rule a policy decision can name (Decision.rule), with what it holds; the daily caps
# (app/controls/caps.py) and the approval check (app/stages/verify_proposal.py) decide under
# these names too.
RULE_NAMES: dict[str, str] = {
    "allowed_tools": "the workflow's tool allowlist",
    "allowed_reasons": "a tool's allowed `reason` values (stripe.refund)",
    "allowed_values": "argument allowlists",
    "allowed_fields": "the record fields the agent may write at all",
    "field_values": "the only values some fields may be set to",
    SHADOW_RULE: "shadow rollout: a reviewer executes every write",
    "public_requires_approval": "customer-facing comments need approval",
    "privileged_value": "privileged argument values (Okta Admins) need approval",
    "approval_threshold": "amounts over the approval threshold need approval",
    "irreversible_needs_approval": "an irreversible tool without an autonomy grant",
    "autonomy_cap": "amounts over the autonomy cap need approval",
    "autonomy_grant": "within the autonomy cap: runs without approval",
    "risk_class": "reversible tools allowed in the workflow",
    "daily_cap_customer": "autonomous spending per requester per UTC day (app/controls/caps.py)",
    "daily_cap_fleet": "autonomous spending of the fleet per UTC day (app/controls/caps.py)",
    "approved": (
        "a reviewer's approval token holds for the exact action (app/stages/verify_proposal.py)"
    ),
}


def rollout_arm(policy: WorkflowPolicy, job_id: str | None) -> str:
    """`live` or `shadow` for one job: canary jobs are chosen by a stable hash of the job id."""
    if policy.stage != "canary":
        return policy.stage
    if job_id is None:
        return "shadow"
    bucket = int(sha256_hex(job_id)[:8], 16) % 100
    return "live" if bucket < policy.canary_percent else "shadow"


@dataclass(frozen=True)
class PolicyCall:
    """One tool call of one workflow, as every policy rule sees it."""

    workflow: str
    tool: str
    args: dict[str, Any]
    job_id: str | None
    policy: WorkflowPolicy
    version: str
    risk: Risk

    @property
    def tool_policy(self) -> ToolPolicy:
        return self.policy.tools.get(self.tool, ToolPolicy())

    def verdict(
        self,
        outcome: Literal["allow", "approval_required", "block"],
        rule: str,
        detail: str,
        **kw: Any,
    ) -> Decision:
        """A decision under the policy version in force."""
        return Decision(outcome, rule, detail, self.version, **kw)


class PolicyRule:
    """One policy rule: a Decision when it decides the call, None to let the next one."""

    def check(self, call: PolicyCall) -> Decision | None:
        raise NotImplementedError


class AllowedTools(PolicyRule):
    """Only the workflow's tools run at all."""

    def check(self, call: PolicyCall) -> Decision | None:
        if call.tool not in call.policy.allowed_tools:
            return call.verdict(
                "block", "allowed_tools", f"{call.tool} is not allowed in {call.workflow}"
            )
        return None


class AllowedReasons(PolicyRule):
    """A tool with a reason allowlist runs only for those reasons."""

    def check(self, call: PolicyCall) -> Decision | None:
        allowed = call.tool_policy.allowed_reasons
        reason = call.args.get("reason")
        if allowed is not None and reason not in allowed:
            return call.verdict(
                "block",
                "allowed_reasons",
                f"reason {reason!r} is not on the allowlist",
                evidence={"reason": reason, "allowed": allowed},
            )
        return None


class AllowedValues(PolicyRule):
    """An argument with an allowlist takes only its values."""

    def check(self, call: PolicyCall) -> Decision | None:
        for arg, allowed in call.tool_policy.allowed_values.items():
            if arg in call.args and call.args[arg] not in allowed:
                return call.verdict(
                    "block",
                    "allowed_values",
                    f"{arg} {call.args[arg]!r} is not on the allowlist",
                    evidence={arg: call.args[arg], "allowed": allowed},
                )
        return None


def _fields(call: PolicyCall) -> dict[str, Any] | None:
    fields = call.args.get("fields")
    return fields if isinstance(fields, dict) else None


class AllowedFields(PolicyRule):
    """A tool that writes a record's fields writes only the fields the agent may set."""

    def check(self, call: PolicyCall) -> Decision | None:
        fields, allowed = _fields(call), call.tool_policy.allowed_fields
        if fields is None or allowed is None:
            return None
        extra = sorted(set(fields) - set(allowed))
        if extra:
            return call.verdict(
                "block",
                "allowed_fields",
                f"fields {', '.join(extra)} may not be written by the agent",
                evidence={"fields": extra, "allowed": allowed},
            )
        return None


class FieldValues(PolicyRule):
    """Some fields take only some values (a status is approved through its own tool)."""

    def check(self, call: PolicyCall) -> Decision | None:
        fields = _fields(call)
        if fields is None:
            return None
        for name, values in call.tool_policy.field_values.items():
            if name in fields and fields[name] not in values:
                return call.verdict(
                    "block",
                    "field_values",
                    f"{name} may not be set to {fields[name]!r}",
                    evidence={name: fields[name], "allowed": values},
                )
        return None


class ShadowRollout(PolicyRule):
    """In shadow (and a canary's shadow arm) the agent proposes, a reviewer executes (the
    approval flow) or rejects; every decision is an agreement or a disagreement for
    `opsgate report`."""

    def check(self, call: PolicyCall) -> Decision | None:
        if call.risk is Risk.READ or rollout_arm(call.policy, call.job_id) != "shadow":
            return None
        return call.verdict(
            "approval_required",
            SHADOW_RULE,
            f"{call.workflow} runs in shadow ({call.policy.stage}): a reviewer executes or "
            f"rejects the proposed {call.tool}",
            evidence={"rollout": call.policy.stage},
        )


class PublicRequiresApproval(PolicyRule):
    """A customer-facing comment needs a human's approval."""

    def check(self, call: PolicyCall) -> Decision | None:
        if call.tool_policy.public_requires_approval and call.args.get("public"):
            return call.verdict(
                "approval_required",
                "public_requires_approval",
                "customer-facing comments need a human approval",
            )
        return None


class PrivilegedValue(PolicyRule):
    """A privileged argument value (an admin group) needs a human's approval every time."""

    def check(self, call: PolicyCall) -> Decision | None:
        for arg, privileged in call.tool_policy.privileged_values.items():
            if arg in call.args and call.args[arg] in privileged:
                return call.verdict(
                    "approval_required",
                    "privileged_value",
                    f"{arg} {call.args[arg]!r} is privileged: a human approves every grant",
                    evidence={arg: call.args[arg]},
                )
        return None


class ApprovalThreshold(PolicyRule):
    """An amount over the tool's approval threshold (per currency) needs approval."""

    def check(self, call: PolicyCall) -> Decision | None:
        currency = str(call.args.get("currency", "")).lower()
        threshold = call.tool_policy.approval_above.get(currency)
        amount = call.args.get("amount")
        if threshold is not None and isinstance(amount, int) and amount > threshold:
            return call.verdict(
                "approval_required",
                "approval_threshold",
                f"{call.tool} of {amount} is over the approval threshold of {threshold}",
                evidence={"amount": amount, "threshold": threshold},
            )
        return None


class AutonomyGrant(PolicyRule):
    """An irreversible tool runs without approval only under an explicit grant, within its
    cap; it decides every irreversible call."""

    def check(self, call: PolicyCall) -> Decision | None:
        if call.risk is not Risk.IRREVERSIBLE:
            return None
        grant = call.tool_policy.autonomy
        currency = str(call.args.get("currency", "")).lower()
        amount = call.args.get("amount")
        cap = grant.max_amount.get(currency) if grant else None
        evidence = {"amount": amount, "currency": currency, "cap": cap}
        if cap is None:
            return call.verdict(
                "approval_required",
                "irreversible_needs_approval",
                f"{call.tool} is irreversible and no autonomy is granted for {currency or 'it'}",
                evidence=evidence,
            )
        if not isinstance(amount, int) or amount > cap:
            return call.verdict(
                "approval_required",
                "autonomy_cap",
                f"{call.tool} of {amount} {currency} is over the autonomy cap of {cap}",
                evidence=evidence,
            )
        return call.verdict(
            "allow",
            "autonomy_grant",
            f"{call.tool} within the autonomy cap of {cap} {currency}",
            grant={"tool": call.tool, "max_amount": cap, "currency": currency},
            evidence=evidence,
        )


class RiskClass(PolicyRule):
    """What no rule before stopped: a read or a reversible write of the workflow runs."""

    def check(self, call: PolicyCall) -> Decision | None:
        return call.verdict(
            "allow", "risk_class", f"{call.risk.value} tool allowed in {call.workflow}"
        )


# The policy, in order: the first rule that decides, decides. Blocks first (what may never
# run), then what needs a person (shadow, public, privileged, over a threshold, irreversible
# without a grant), then what runs.
RULES: list[PolicyRule] = [
    AllowedTools(),
    AllowedReasons(),
    AllowedValues(),
    AllowedFields(),
    FieldValues(),
    ShadowRollout(),
    PublicRequiresApproval(),
    PrivilegedValue(),
    ApprovalThreshold(),
    AutonomyGrant(),
    RiskClass(),
]


def decide(workflow: str, tool: str, args: dict[str, Any], job_id: str | None = None) -> Decision:
    """Evaluate the rules in order; the first that decides, decides."""
    policy, version = workflow_policy(workflow)
    call = PolicyCall(workflow, tool, args, job_id, policy, version, get_tool(tool).risk)
    for rule in RULES:
        decision = rule.check(call)
        if decision is not None:
            return decision
    raise AssertionError("RiskClass decides every call")  # pragma: no cover
