"""One escalation as the console shows it: the exact action an approval binds to, why it is
here, the job's audited timeline, and what the signed-in reviewer may decide."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.chain import canonical_json
from app.audit.story import Story, story
from app.controls import approvals, policy
from app.human import decisions
from app.human.escalation import APPROVABLE
from app.identity.apikeys import Principal
from app.identity.visibility import may_see
from app.jobs import lifecycle
from app.models import Escalation, EscalationStatus, Job, PlanStep, as_utc, utcnow
from app.ui.queue import stake
from tools.base import Risk
from tools.catalog import get_tool

# Escalations whose step a reviewer may correct and send back through verification.
REVISABLE = APPROVABLE | {"verification_failed"}

# Evidence keys shown in their own sections, not again in the table of everything recorded.
_SHOWN = {"step_id", "tool", "rule", "policy_version", "verified", "judge", "signals"}


@dataclass(frozen=True)
class Argument:
    """One argument of the proposed call, as a form field."""

    name: str
    value: Any
    # How the edit form shows it: number, text, bool, or json (lists and objects).
    kind: str
    # What a bare value means, when it is not plain ("9000" of a usd amount: 90.00 USD).
    hint: str = ""

    @property
    def shown(self) -> str:
        """The value as text (JSON for structured values)."""
        if self.kind == "json":
            return canonical_json(self.value)
        return str(self.value).lower() if self.kind == "bool" else str(self.value)


@dataclass(frozen=True)
class Proposed:
    """The exact action an approval binds to."""

    step_id: str
    revision: int
    tool: str
    system: str
    risk: str
    irreversible: bool
    arguments: list[Argument]
    canonical: str
    action_hash: str
    policy_version: str
    stake: str
    rationale: str
    evidence: list[Any]
    status: str
    result_id: str | None


@dataclass(frozen=True)
class Check:
    """One rule the verifiers ran on the proposal, and the values it compared."""

    rule: str
    ok: bool
    detail: str
    values: dict[str, Any]


@dataclass
class Item:
    """Everything the item page shows, and what the reviewer may do."""

    esc: Escalation
    job: Job
    proposed: Proposed | None
    story: Story
    gate: str
    checks: list[Check]
    soft: dict[str, Any] | None
    recorded: dict[str, Any]
    requester_words: list[tuple[str, str]]
    # Why the reviewer cannot decide (None: they can), and what they may do.
    blocked: str | None
    can_approve: bool
    can_revise: bool
    two_person_above: str | None
    awaiting_second: list[str]
    later: list[Escalation] = field(default_factory=list)
    earlier: list[Escalation] = field(default_factory=list)
    # The proposed step's arguments as stored (for reads of its target).
    step_args: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        """Whether the escalation still waits for a decision."""
        return self.esc.status == EscalationStatus.OPEN

    @property
    def readback(self) -> list[str]:
        """What the read-backs after the writes found (the outcome verdicts)."""
        return [
            e["what"]
            for e in self.story["timeline"]
            if e["kind"] == "verdict" and "outcome" in e["what"]
        ]

    @property
    def settling(self) -> bool:
        """Whether the job is moving through the pipeline after a decision (the page then
        reloads itself until it settles)."""
        return self.esc.status != EscalationStatus.OPEN and self.job.status in lifecycle.ACTIVE

    def claim_holder(self, now: datetime) -> str | None:
        """Who holds the item now, if anyone."""
        until = as_utc(self.esc.claimed_until)
        return self.esc.claimed_by if self.esc.claimed_by and until and until > now else None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "json"


def _hint(name: str, value: Any, args: dict[str, Any]) -> str:
    if name == "amount" and _kind(value) == "number" and isinstance(args.get("currency"), str):
        return f"minor units: {stake('-', {'amount': value, 'currency': args['currency']})}"
    return ""


def _irreversible(workflow: str, tool: str, args: dict[str, Any]) -> bool:
    if get_tool(tool).risk is Risk.IRREVERSIBLE:
        return True
    tool_policy = policy.workflow_policy(workflow)[0].tools.get(tool)
    privileged = tool_policy.privileged_values if tool_policy else {}
    return any(args.get(arg) in values for arg, values in privileged.items())


def _step(session: Session, esc: Escalation) -> PlanStep | None:
    step_id = esc.evidence.get("step_id")
    if step_id is None:
        return None
    return session.scalar(
        select(PlanStep)
        .where(PlanStep.job_id == esc.job_id, PlanStep.step_id == str(step_id))
        .order_by(PlanStep.revision.desc())
        .limit(1)
    )


def proposed(job: Job, step: PlanStep) -> Proposed:
    """The step as the action an approval would bind to, under the policy in force now."""
    spec = get_tool(step.tool)
    version = policy.workflow_policy(job.workflow)[1]
    return Proposed(
        step_id=step.step_id,
        revision=step.revision,
        tool=step.tool,
        system=spec.system,
        risk=spec.risk.value,
        irreversible=_irreversible(job.workflow, step.tool, step.args),
        arguments=[
            Argument(k, v, _kind(v), _hint(k, v, step.args)) for k, v in sorted(step.args.items())
        ],
        canonical=canonical_json(step.args),
        action_hash=approvals.action_hash(job.id, step, version),
        policy_version=version,
        stake=stake(step.tool, step.args),
        rationale=step.rationale,
        evidence=list(step.evidence or []),
        status=step.status,
        result_id=(step.result or {}).get("id"),
    )


def _gate(esc: Escalation) -> str:
    """Which gate stopped the action, in the reviewer's words."""
    ev = esc.evidence
    if esc.reason in ("policy_blocked", "approval_required", "shadow_proposal"):
        rule = ev.get("rule", "?")
        return f"policy rule {rule} (policy version {str(ev.get('policy_version', '?'))[:12]})"
    if esc.reason == "verification_failed":
        return f"verifier rule {ev.get('rule', '?')}"
    if esc.reason == "low_confidence":
        return f"the soft check (judged by {ev.get('judged_by', '?')})"
    if esc.reason == "partial":
        return f"a later step failed after writes ({ev.get('original_reason', '?')})"
    return f"the {esc.stage} stage"


def _checks(esc: Escalation) -> list[Check]:
    ev = esc.evidence
    checks = [
        Check(
            str(v.get("rule", "?")),
            bool(v.get("ok")),
            str(v.get("detail", "")),
            dict(v.get("evidence") or {}),
        )
        for v in ev.get("verified") or []
        if isinstance(v, dict)
    ]
    if esc.reason == "verification_failed":
        values = {k: v for k, v in ev.items() if k not in _SHOWN}
        checks.append(Check(str(ev.get("rule", "?")), False, esc.detail, values))
    return checks


def _soft(esc: Escalation) -> dict[str, Any] | None:
    ev = esc.evidence
    if esc.reason != "low_confidence" and "confidence" not in ev:
        return None
    return {
        "confidence": ev.get("confidence"),
        "threshold": ev.get("threshold"),
        "judged_by": ev.get("judged_by"),
        "signals": ev.get("signals"),
        "reasons": ev.get("reasons"),
        "judge": ev.get("judge"),
    }


def words(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """The job's input flattened to (field, text) pairs: what the requester sent."""
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += words(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list):
        return [(f"{prefix}[{i}]", t) for i, v in enumerate(value) for _, t in words(v)]
    return [(prefix or "input", str(value))]


def load(session: Session, escalation_id: int, principal: Principal) -> Item | None:
    """The item page's data, or None when there is no such escalation in the reviewer's
    scope (an item outside it is not shown to exist)."""
    esc = session.get(Escalation, escalation_id)
    if esc is None:
        return None
    job = session.get(Job, esc.job_id)
    if job is None or not may_see(principal, job):
        return None
    step = _step(session, esc)
    view = proposed(job, step) if step is not None else None
    others = session.scalars(
        select(Escalation).where(Escalation.job_id == job.id).order_by(Escalation.id)
    ).all()
    blocked = None
    if esc.status != EscalationStatus.OPEN:
        blocked = f"already decided: {esc.decision or esc.status}"
    elif principal.role not in ("reviewer", "admin"):
        blocked = f"your key's role is {principal.role}; deciding needs reviewer or admin"
    elif decisions.same_person(principal.actor, job.requester):
        blocked = (
            "separation of duties: you asked for this job (requester "
            f"{job.requester}), so another reviewer must decide it"
        )
    threshold = (
        decisions.two_person_threshold(job, step.tool, step.args) if step is not None else None
    )
    approvers = list(esc.approved_by or [])
    currency = str(step.args.get("currency", "")) if step is not None else ""
    return Item(
        esc=esc,
        job=job,
        proposed=view,
        story=story(session, job),
        gate=_gate(esc),
        checks=_checks(esc),
        soft=_soft(esc),
        recorded={k: v for k, v in esc.evidence.items() if k not in _SHOWN},
        requester_words=words(job.input),
        blocked=blocked,
        can_approve=blocked is None and step is not None and esc.reason in APPROVABLE,
        can_revise=blocked is None and step is not None and esc.reason in REVISABLE,
        two_person_above=stake(step.tool, {"amount": threshold, "currency": currency})
        if step is not None and threshold is not None
        else None,
        awaiting_second=approvers,
        later=[e for e in others if e.id > esc.id],
        earlier=[e for e in others if e.id < esc.id],
        step_args=dict(step.args) if step is not None else {},
    )


def now() -> datetime:
    """The time the page is rendered at (ages and claims are measured against it)."""
    return utcnow()
