"""A job's audit trail told for a person: who asked, which agent runtime acted, what data
it saw, what it proposed, which rules and people allowed it, what changed where under which
identity, and what it cost. Plain data, shared by `opsgate audit show` and its --json."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypedDict, final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import chain as audit
from app.audit import verify
from app.models import AuditEvent, Escalation, Job, ModelCall, PlanStep, ToolCall, as_utc
from tools.base import Risk
from tools.catalog import CATALOG


class JobSummary(TypedDict):
    id: str
    workflow: str
    status: str
    incident: bool
    created_at: str | None
    updated_at: str | None


class WhoAsked(TypedDict):
    requester: str
    requester_ref: str
    submitted_by: str
    source: str
    external_id: str
    intake_key: str | None


@final  # final, so `"tool" in read` tells the two kinds of read apart
class DataRead(TypedDict):
    """A read of a system (a read tool's call)."""

    tool: str
    system: str
    service_identity: str
    stage: str
    outcome: str
    tool_call_id: int


@final
class ModelRead(TypedDict):
    """A model call, with the policy passages its prompt held."""

    model: str
    tier: str
    prompt_version: str
    passages: list[str]
    outcome: str
    model_call_id: int


class ProposedStepView(TypedDict):
    step_id: str
    revision: int
    tool: str
    args: dict[str, Any]
    rationale: str
    status: str


class Proposed(TypedDict):
    tier: str | None
    summary: str | None
    confidence: float | None
    steps: list[ProposedStepView]


class EventLine(TypedDict):
    seq: int
    kind: str
    actor: str
    what: str


class TimelineEntry(EventLine):
    at: str | None


class Change(TypedDict):
    """A write, as the audit recorded its execution."""

    step: str | None
    tool: str | None
    system: str | None
    service_identity: str | None
    result_id: str | None
    idempotency_key: str | None
    approval_id: str | None
    agent: str
    requester_ref: str
    at: str | None


class Cost(TypedDict):
    model_usd: str
    model_calls: int
    input_tokens: int
    output_tokens: int
    tool_calls: int


class EscalationView(TypedDict):
    id: int
    reason: str
    detail: str
    status: str
    decision: str | None
    decided_by: str | None


class Break(TypedDict):
    chain: str
    seq: int
    problem: str


class ChainStatus(TypedDict):
    events: int
    verified: bool
    breaks: list[Break]


class Story(TypedDict):
    """A job's story: the sections `opsgate audit show` prints, and its --json as is."""

    job: JobSummary
    who_asked: WhoAsked
    agent_runtimes: list[str]
    data_seen: list[DataRead | ModelRead]
    proposed: Proposed
    allowed_by: list[EventLine]
    changed: list[Change]
    cost: Cost
    escalations: list[EscalationView]
    timeline: list[TimelineEntry]
    chain: ChainStatus


def _iso(value: Any) -> str | None:
    moment = as_utc(value)
    return moment.isoformat() if moment is not None else None


def _is_write(tool: str) -> bool:
    spec = CATALOG.get(tool)
    return spec is not None and spec.risk is not Risk.READ


def line(ev: AuditEvent) -> str:
    """One event as a sentence."""
    p = ev.payload
    kind = ev.kind
    if kind == "intake":
        return f"accepted from {p.get('source')} ({p.get('intake_key')}) as {p.get('workflow')}"
    if kind == "transition":
        return f"{p.get('from')} -> {p.get('to')}" + (f": {p['reason']}" if p.get("reason") else "")
    if kind == "plan":
        tools = ", ".join(s.get("tool", "?") for s in p.get("steps") or [])
        return f"planned by the {p.get('tier')} tier: {p.get('summary')} [{tools}]"
    if kind == "model_call":
        return (
            f"asked {p.get('model')} ({p.get('tier')}, prompt {p.get('prompt_version')}): "
            f"{p.get('outcome')}, {p.get('input_tokens')}+{p.get('output_tokens')} tokens, "
            f"{p.get('cost_usd')} USD" + (" (cache)" if p.get("cache_hit") else "")
        )
    if kind == "tool_call":
        who = (p.get("identities") or {}).get("service")
        return f"{p.get('tool')} as {who} in {p.get('stage')}: {p.get('outcome')}"
    if kind == "policy_decision":
        return (
            f"policy {p.get('outcome')} by rule {p.get('rule')} (policy {p.get('policy_version')})"
        )
    if kind == "verdict":
        soft = p.get("soft_check") or {}
        extra = f"; soft check {soft.get('confidence')} by {soft.get('judged_by')}" if soft else ""
        passed = ", ".join(p.get("passed") or [p.get("rule", "")])
        return f"verified ({p.get('stage')}): {passed}{extra}"
    if kind == "approval":
        return (
            f"approved by {', '.join(p.get('approvers') or [])} (approval {p.get('approval_id')})"
        )
    if kind == "step_executed":
        who = p.get("service_identity")
        return f"{p.get('step')} {p.get('tool')} done as {who} -> {p.get('result_id')}"
    if kind == "escalation":
        return f"escalated ({p.get('reason')}) at {p.get('stage')}: {p.get('detail')}"
    if kind == "decision":
        return f"reviewer decision: {p.get('decision')} {p.get('reason_code') or ''}".strip()
    return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in p.items() if k != "at")


def model_spend(session: Session, job_ids: list[str]) -> dict[str, Decimal]:
    """The story's `cost.model_usd` (every model call's cost, whatever its outcome) for many
    jobs at once, summed in SQL in one query; a job with no model call costs 0."""
    if not job_ids:
        return {}
    spend = dict(
        session.execute(
            select(ModelCall.job_id, func.sum(func.coalesce(ModelCall.cost_usd, 0)))
            .where(ModelCall.job_id.in_(job_ids))
            .group_by(ModelCall.job_id)
        ).all()
    )
    return {job_id: Decimal(spend.get(job_id) or 0) for job_id in job_ids}


def story(session: Session, job: Job) -> Story:
    """Everything `opsgate audit show` prints, as plain data."""
    events = list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.job_id == job.id).order_by(AuditEvent.seq)
        )
    )
    calls = list(
        session.scalars(select(ToolCall).where(ToolCall.job_id == job.id).order_by(ToolCall.id))
    )
    models = list(
        session.scalars(select(ModelCall).where(ModelCall.job_id == job.id).order_by(ModelCall.id))
    )
    steps = list(
        session.scalars(
            select(PlanStep)
            .where(PlanStep.job_id == job.id)
            .order_by(PlanStep.position, PlanStep.revision)
        )
    )
    escalations = list(
        session.scalars(
            select(Escalation).where(Escalation.job_id == job.id).order_by(Escalation.id)
        )
    )
    breaks = verify.one_job(session, job.id)
    by_kind: dict[str, list[AuditEvent]] = {}
    for ev in events:
        by_kind.setdefault(ev.kind, []).append(ev)
    intake = next(iter(by_kind.get("intake", [])), None)
    cost = sum((m.cost_usd or Decimal(0) for m in models), Decimal(0))
    seen: list[DataRead | ModelRead] = [
        DataRead(
            tool=c.tool,
            system=c.system,
            service_identity=c.service_identity,
            stage=c.stage,
            outcome=c.outcome,
            tool_call_id=c.id,
        )
        for c in calls
        if not _is_write(c.tool)
    ]
    seen += [
        ModelRead(
            model=m.model,
            tier=m.tier,
            prompt_version=m.prompt_version,
            passages=m.passages,
            outcome=m.outcome,
            model_call_id=m.id,
        )
        for m in models
    ]
    return {
        "job": {
            "id": job.id,
            "workflow": job.workflow,
            "status": job.status,
            "incident": bool(job.incident),
            "created_at": _iso(job.created_at),
            "updated_at": _iso(job.updated_at),
        },
        "who_asked": {
            "requester": job.requester,
            "requester_ref": audit.reference(job.requester),
            "submitted_by": job.submitted_by,
            "source": job.source,
            "external_id": job.external_id,
            "intake_key": intake.payload.get("intake_key") if intake else None,
        },
        "agent_runtimes": sorted({ev.actor for ev in events if ev.actor.startswith("agent:")}),
        "data_seen": seen,
        "proposed": {
            "tier": job.planner_tier,
            "summary": job.plan_summary,
            "confidence": job.plan_confidence,
            "steps": [
                {
                    "step_id": s.step_id,
                    "revision": s.revision,
                    "tool": s.tool,
                    "args": s.args,
                    "rationale": s.rationale,
                    "status": s.status,
                }
                for s in steps
            ],
        },
        "allowed_by": [
            {"seq": ev.seq, "kind": ev.kind, "actor": ev.actor, "what": line(ev)}
            for ev in events
            if ev.kind in ("policy_decision", "verdict", "approval", "decision")
        ],
        "changed": [
            {
                "step": ev.payload.get("step"),
                "tool": ev.payload.get("tool"),
                "system": CATALOG[ev.payload["tool"]].system
                if ev.payload.get("tool") in CATALOG
                else None,
                "service_identity": ev.payload.get("service_identity"),
                "result_id": ev.payload.get("result_id"),
                "idempotency_key": ev.payload.get("idempotency_key"),
                "approval_id": ev.payload.get("approval_id"),
                "agent": ev.actor,
                "requester_ref": audit.reference(job.requester),
                "at": ev.payload.get("at"),
            }
            for ev in by_kind.get("step_executed", [])
        ],
        "cost": {
            "model_usd": str(cost),
            "model_calls": len(models),
            "input_tokens": sum(m.input_tokens or 0 for m in models),
            "output_tokens": sum(m.output_tokens or 0 for m in models),
            "tool_calls": len(calls),
        },
        "escalations": [
            {
                "id": e.id,
                "reason": e.reason,
                "detail": e.detail,
                "status": e.status,
                "decision": e.decision,
                "decided_by": e.decided_by,
            }
            for e in escalations
        ],
        "timeline": [
            {
                "seq": ev.seq,
                "at": ev.payload.get("at"),
                "kind": ev.kind,
                "actor": ev.actor,
                "what": line(ev),
            }
            for ev in events
        ],
        "chain": {
            "events": len(events),
            "verified": not breaks,
            "breaks": [{"chain": b.job_id, "seq": b.seq, "problem": b.problem} for b in breaks],
        },
    }
