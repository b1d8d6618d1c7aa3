"""A reviewer's live read: the target as it is now, beside the proposal.

The read is the verify stage's own: the plan's verifier chains gather what they care about
(the charge and its refundable amount, the ticket and its comments, the invoice and its PO,
the Okta user and groups) through the same adapters, the gates at the call and the same call
recorder, and run their rules again. Each read is recorded on the job's audit trail under the
reviewer's identity. What changed since the proposal is the difference between these answers
and the same reads made while the job was planned and verified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.controls import policy
from app.controls.calls import CallRecorder, RecordedCall
from app.errors import EscalationRequired, OpsgateError
from app.jobs.steps import StoredStep
from app.models import Job, PlanStep, StepStatus, ToolCall, utcnow
from app.stages.runner import JobView
from app.stages.verify_proposal import check_facts
from app.ui.item import Check
from tools.base import Risk
from tools.catalog import get_tool

# The argument that names an action's target record, per system (the first one present).
TARGET_ARGS = ("charge_id", "ticket_id", "invoice_id", "user_id", "login")


@dataclass(frozen=True)
class FieldChange:
    """One field of a record that differs from when the job was verified."""

    name: str
    before: Any
    now: Any


@dataclass(frozen=True)
class RecordRead:
    """One record read now, and how it differs from the same read at proposal time."""

    tool: str
    request: dict[str, Any]
    record: dict[str, Any] | None
    outcome: str
    # None: this read was not made when the job was verified (nothing to compare).
    changes: list[FieldChange] | None


@dataclass
class LiveRead:
    """What a live read found, as of when it ran."""

    as_of: datetime
    reads: list[RecordRead] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    # The rule the proposal fails now, if any; the read itself failing is `error`.
    failing: Check | None = None
    error: str | None = None

    @property
    def changed(self) -> bool:
        """Whether any record differs from when the proposal was verified."""
        return any(r.changes for r in self.reads)

    @property
    def compared(self) -> bool:
        """Whether any read could be compared with one made when the job was verified."""
        return any(r.changes is not None for r in self.reads)

    @property
    def matters(self) -> bool:
        """Whether the verifiers would now judge the proposal differently."""
        return self.failing is not None


def _fields(record: Any) -> dict[str, Any]:
    if isinstance(record, dict):
        return record
    return {"items": record}


def _flat(value: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """A record as dotted paths to its leaves (`charge.amount_refunded`, `items[0].id`), so a
    difference names the field that moved, not the whole record."""
    if depth < 4 and isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    if depth < 4 and isinstance(value, list) and value and len(value) <= 50:
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]", depth + 1))
        return out
    return {prefix or "value": value}


def _diff(before: dict[str, Any], now: dict[str, Any]) -> list[FieldChange]:
    then, current = _flat(before), _flat(now)
    return [
        FieldChange(k, then.get(k), current.get(k))
        for k in sorted(then.keys() | current.keys())
        if json.dumps(then.get(k), sort_keys=True, default=str)
        != json.dumps(current.get(k), sort_keys=True, default=str)
    ]


def _earlier(session: Session, job_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The last answer of every read the pipeline made for this job, by (tool, request)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    rows = session.scalars(
        select(ToolCall)
        .where(ToolCall.job_id == job_id, ToolCall.outcome == "ok", ToolCall.stage != "review")
        .order_by(ToolCall.id)
    )
    for row in rows:
        key = (row.tool, json.dumps(row.request, sort_keys=True, default=str))
        found[key] = _fields(row.response)
    return found


def read(session: Session, job_id: str, actor: str) -> LiveRead:
    """Read the job's targets now, judge the plan's pending writes again, and record the
    reads on the job's audit trail as `actor`'s (the caller's transaction is committed)."""
    job = session.get(Job, job_id)
    assert job is not None
    view = JobView(job.id, job.workflow, dict(job.input), job.requester, job.version, 0, 0)
    steps = [StoredStep.of(s) for s in job.steps if s.status == StepStatus.PENDING]
    earlier = _earlier(session, job.id)
    requester = job.requester
    # The reads are I/O: no transaction stays open while they run.
    session.commit()
    result = LiveRead(as_of=utcnow())
    rec = CallRecorder(stage="review", workflow=view.workflow)
    writes = [s for s in steps if get_tool(s.tool).risk is not Risk.READ]
    try:
        decisions = [policy.decide(view.workflow, s.tool, s.args, view.id) for s in writes]
        verdicts, _ = check_facts(view, writes, decisions, rec, awaiting_approval=True)
        result.checks = [Check(v.rule, v.ok, v.detail, dict(v.evidence)) for v in verdicts]
    except EscalationRequired as exc:
        values = {k: v for k, v in exc.evidence.items() if k not in ("step_id", "tool", "rule")}
        result.failing = Check(str(exc.evidence.get("rule", exc.reason)), False, exc.detail, values)
        result.checks.append(result.failing)
    except OpsgateError as exc:
        result.error = f"{exc.__class__.__name__}: {exc}"
    seen: set[tuple[str, str]] = set()
    for call in rec.calls:
        # The plan's chains may read one record twice (a refund and its note, one ticket).
        key = (call.tool, json.dumps(call.request, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            result.reads.append(_compare(call, earlier))
    rec.write(session, job_id, requester=requester, reviewer=actor)
    session.commit()
    return result


def _compare(call: RecordedCall, earlier: dict[tuple[str, str], dict[str, Any]]) -> RecordRead:
    key = (call.tool, json.dumps(call.request, sort_keys=True, default=str))
    now = _fields(call.response) if call.outcome == "ok" else None
    before = earlier.get(key)
    changes = _diff(before, now) if before is not None and now is not None else None
    return RecordRead(call.tool, call.request, now, call.outcome, changes)


def target(args: dict[str, Any]) -> tuple[str, str] | None:
    """The argument naming a step's target record, and its value."""
    for name in TARGET_ARGS:
        value = args.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return name, str(value)
    return None


@dataclass(frozen=True)
class OtherAction:
    """Another job's step on the same target record."""

    job_id: str
    step_id: str
    revision: int
    tool: str
    status: str
    args: dict[str, Any]


def same_target(
    session: Session, job_id: str, tool: str, args: dict[str, Any]
) -> list[OtherAction]:
    """Other jobs' write steps on the same record of the same system, newest first."""
    found = target(args)
    if found is None:
        return []
    name, value = found
    system = get_tool(tool).system
    # Ids keep their JSON type (a Zendesk ticket id is a number, a charge id a string).
    stored = args[name]
    same = (
        PlanStep.args[name].as_integer() == stored
        if isinstance(stored, int)
        else PlanStep.args[name].as_string() == value
    )
    rows = session.scalars(
        select(PlanStep)
        .where(
            PlanStep.job_id != job_id,
            PlanStep.tool.startswith(f"{system}.", autoescape=True),
            same,
        )
        .order_by(PlanStep.id.desc())
        .limit(20)
    )
    return [
        OtherAction(s.job_id, s.step_id, s.revision, s.tool, s.status, dict(s.args))
        for s in rows
        if get_tool(s.tool).risk is not Risk.READ
    ]
