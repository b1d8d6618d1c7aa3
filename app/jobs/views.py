"""Plain-data views of jobs and escalations, shared by the CLI and the HTTP API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InputError
from app.models import Escalation, Job, JobEvent, ModelCall, ToolCall


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_summary(job: Job, escalation: Escalation | None = None) -> dict[str, Any]:
    """One line's worth of a job."""
    return {
        "id": job.id,
        "workflow": job.workflow,
        "source": job.source,
        "external_id": job.external_id,
        "status": job.status,
        "reason": job.status_reason,
        "escalation_reason": escalation.reason if escalation else None,
        "incident": bool(job.incident),
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
    }


def escalation_view(esc: Escalation) -> dict[str, Any]:
    """An escalation with its evidence."""
    return {
        "id": esc.id,
        "job_id": esc.job_id,
        "reason": esc.reason,
        "detail": esc.detail,
        "evidence": esc.evidence,
        "stage": esc.stage,
        "status": esc.status,
        "notified_at": _iso(esc.notified_at),
        "decision": esc.decision,
        "decided_by": esc.decided_by,
        "claimed_by": esc.claimed_by,
        "claimed_until": _iso(esc.claimed_until),
        "deadline": _iso(esc.deadline),
        "created_at": _iso(esc.created_at),
    }


def latest_escalation(session: Session, job_id: str) -> Escalation | None:
    """The job's most recent escalation."""
    return session.scalar(
        select(Escalation)
        .where(Escalation.job_id == job_id)
        .order_by(Escalation.id.desc())
        .limit(1)
    )


def job_detail(session: Session, job: Job) -> dict[str, Any]:
    """Everything about a job: status, plan steps, events, escalation, tool calls."""
    esc = latest_escalation(session, job.id)
    events = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
    ).all()
    calls = session.scalars(
        select(ToolCall).where(ToolCall.job_id == job.id).order_by(ToolCall.id)
    ).all()
    model_calls = session.scalars(
        select(ModelCall).where(ModelCall.job_id == job.id).order_by(ModelCall.id)
    ).all()
    return {
        **job_summary(job, esc),
        "requester": job.requester,
        "submitted_by": job.submitted_by,
        "input": job.input,
        "plan": {
            "summary": job.plan_summary,
            "confidence": job.plan_confidence,
            "tier": job.planner_tier,
        },
        "steps": [
            {
                "step_id": s.step_id,
                "revision": s.revision,
                "tool": s.tool,
                "args": s.args,
                "status": s.status,
                "idempotency_key": s.idempotency_key,
                "attempts": s.attempts,
                "result_id": (s.result or {}).get("id"),
            }
            for s in job.steps
        ],
        "events": [
            {
                "from": e.from_status,
                "to": e.to_status,
                "reason": e.reason,
                "actor": e.actor,
                "at": _iso(e.at),
            }
            for e in events
        ],
        "tool_calls": [
            {
                "tool": c.tool,
                "stage": c.stage,
                "outcome": c.outcome,
                "latency_ms": c.latency_ms,
                "service_identity": c.service_identity,
            }
            for c in calls
        ],
        "model_calls": [
            {
                "tier": m.tier,
                "model": m.model,
                "prompt_version": m.prompt_version,
                "outcome": m.outcome,
                "cache_hit": m.cache_hit,
                "input_tokens": m.input_tokens,
                "output_tokens": m.output_tokens,
                "cost_usd": str(m.cost_usd),
                "latency_ms": m.latency_ms,
                "passages": m.passages,
                "router": m.router,
            }
            for m in model_calls
        ],
        "cost_usd": str(sum((m.cost_usd for m in model_calls), Decimal(0))),
        "escalation": escalation_view(esc) if esc else None,
    }


def find_job(session: Session, ident: str) -> Job | None:
    """A job by id, or by a unique id prefix (at least 6 characters)."""
    job = session.get(Job, ident)
    if job is not None or len(ident) < 6:
        return job
    found = session.scalars(select(Job).where(Job.id.startswith(ident)).limit(2)).all()
    return found[0] if len(found) == 1 else None


def require_job(session: Session, ident: str) -> Job:
    """find_job, or InputError naming what was not found (for commands)."""

    job = find_job(session, ident)
    if job is None:
        raise InputError(f"no job {ident!r}")
    return job
