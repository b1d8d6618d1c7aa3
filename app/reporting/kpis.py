"""The KPI report (what `opsgate report` prints): per workflow, over the jobs created in a
window, cost per completed task, escalation rate and reasons, tool-call success, retries,
schema adherence, time to done, shadow-mode agreement and job counts; plus the rollout
stages and shadow agreement per tool that a promotion decision rests on.

The numbers are counted in SQL per workflow into a `Tally` (raw counts, which add up across
workflows), and every rate is derived from a tally, so the "all" column is the same
arithmetic over the merged counts, never an average of averages.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, true
from sqlalchemy.orm import Session

from app.controls.policy import current_policy
from app.jobs import lifecycle
from app.models import (
    Escalation,
    EscalationStatus,
    Job,
    JobEvent,
    ModelCall,
    ToolCall,
    as_utc,
    utcnow,
)

# A job counts for the escalation rate once it has stopped moving on its own.
SETTLED = lifecycle.TERMINAL | {lifecycle.ESCALATED}
# In shadow every write goes to a reviewer by design: those are measured as agreement,
# not as escalations.
SHADOW_REASON = "shadow_proposal"
# Model-call outcomes that mean the model returned an answer the schema could judge.
ANSWERED = ("ok", "invalid", "refused")
DASH = "—"
ALL = "all"

_MICRO = Decimal("0.000001")


# --- the arithmetic ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's
    default, PostgreSQL's percentile_cont); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(part: float, whole: float, digits: int = 4) -> float | None:
    """part / whole rounded, or None when there is nothing to divide by."""
    return round(part / whole, digits) if whole else None


def _usd(value: Decimal) -> str:
    return str(value.quantize(_MICRO, rounding=ROUND_HALF_UP))


@dataclass
class Tally:
    """Raw counts for one workflow over the window; tallies add up (`merge`)."""

    by_status: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: int = 0
    escalated_settled: int = 0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    tool_calls: collections.Counter[str] = field(default_factory=collections.Counter)
    tool_calls_retried: int = 0
    # (tier, outcome) of model calls that reached a model (cache hits are counted apart)
    model_calls: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    cache_hits: int = 0
    spend: Decimal = Decimal(0)
    durations: list[float] = field(default_factory=list)
    shadow: collections.Counter[str] = field(default_factory=collections.Counter)

    def merge(self, other: Tally) -> None:
        """Add another tally's counts to this one."""
        self.by_status.update(other.by_status)
        self.retries += other.retries
        self.escalated_settled += other.escalated_settled
        self.reasons.update(other.reasons)
        self.tool_calls.update(other.tool_calls)
        self.tool_calls_retried += other.tool_calls_retried
        self.model_calls.update(other.model_calls)
        self.cache_hits += other.cache_hits
        self.spend += other.spend
        self.durations.extend(other.durations)
        self.shadow.update(other.shadow)


def kpis(workflow: str, t: Tally) -> dict[str, Any]:
    """The KPIs of one tally; a rate with nothing to divide by is None."""
    total = sum(t.by_status.values())
    completed = t.by_status.get(lifecycle.COMPLETED, 0)
    settled = sum(n for s, n in t.by_status.items() if s in SETTLED)
    calls = sum(t.tool_calls.values())
    ok_calls = t.tool_calls.get("ok", 0)
    by_outcome: collections.Counter[str] = collections.Counter()
    tiers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (tier, outcome), n in t.model_calls.items():
        by_outcome[outcome] += n
        tiers[tier][outcome] += n
    answered = sum(by_outcome[o] for o in ANSWERED)
    decided = t.shadow["approved"] + t.shadow["edited"] + t.shadow["rejected"]
    return {
        "workflow": workflow,
        "jobs": {
            "total": total,
            "settled": settled,
            "completed": completed,
            "by_status": dict(sorted(t.by_status.items())),
        },
        "cost": {
            "total_usd": _usd(t.spend),
            "per_completed_usd": _usd(t.spend / completed) if completed else None,
            "model_calls": sum(t.model_calls.values()) + t.cache_hits,
        },
        "escalation": {
            "escalated": t.escalated_settled,
            "settled": settled,
            "rate": ratio(t.escalated_settled, settled),
            "by_reason": dict(t.reasons.most_common()),
        },
        "tool_calls": {
            "total": calls,
            "ok": ok_calls,
            "failed": calls - ok_calls,
            "success_rate": ratio(ok_calls, calls),
            "retried": t.tool_calls_retried,
        },
        "retries": {
            "total": t.retries,
            "per_run": ratio(t.retries, total, 3),
            "retried_tool_calls": t.tool_calls_retried,
        },
        "schema": {
            "answered": answered,
            "ok": by_outcome["ok"],
            "invalid": by_outcome["invalid"],
            "refused": by_outcome["refused"],
            "no_answer": sum(n for o, n in by_outcome.items() if o not in ANSWERED),
            "cache_hits": t.cache_hits,
            "adherence": ratio(by_outcome["ok"], answered),
            "by_tier": {tier: _adherence(c) for tier, c in sorted(tiers.items())},
        },
        "time_to_done": {
            "completed": len(t.durations),
            "p50_s": _seconds(percentile(t.durations, 50)),
            "p95_s": _seconds(percentile(t.durations, 95)),
        },
        "shadow": {
            "proposals": t.shadow["proposals"],
            "approved": t.shadow["approved"],
            "edited": t.shadow["edited"],
            "rejected": t.shadow["rejected"],
            "open": t.shadow["open"],
            "decided": decided,
            "agreement_rate": ratio(t.shadow["approved"], decided),
        },
    }


def _adherence(outcomes: collections.Counter[str]) -> dict[str, Any]:
    answered = sum(outcomes[o] for o in ANSWERED)
    return {
        "answered": answered,
        "ok": outcomes["ok"],
        "adherence": ratio(outcomes["ok"], answered),
    }


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- counting in the database --------------------------------------------------------------


def _window(since: datetime | None) -> ColumnElement[bool]:
    return true() if since is None else Job.created_at >= since


def shadow_agreement(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Per workflow and tool: proposals, approved as proposed (agreement), edited, rejected,
    open, and the agreement rate."""
    rows = session.execute(
        select(
            Job.workflow,
            Escalation.evidence,
            Escalation.status,
            Escalation.decision,
            Escalation.note,
        )
        .join(Job, Job.id == Escalation.job_id)
        .where(Escalation.reason == SHADOW_REASON, _window(since))
    ).all()
    table: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    reasons: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    for workflow, evidence, status, decision, note in rows:
        key = (workflow, str((evidence or {}).get("tool", "?")))
        table[key]["proposals"] += 1
        if status == EscalationStatus.OPEN:
            table[key]["open"] += 1
        elif decision == "approve":
            table[key]["approved"] += 1
        elif decision == "edit":
            table[key]["edited"] += 1  # executed, but not as the agent proposed it
        elif decision == "reject":
            table[key]["rejected"] += 1
            reasons[key][(note or "other").split(":", 1)[0]] += 1
        else:
            table[key]["closed_otherwise"] += 1
    out = []
    for (workflow, tool), c in sorted(table.items()):
        decided = c["approved"] + c["edited"] + c["rejected"]
        out.append(
            {
                "workflow": workflow,
                "tool": tool,
                "proposals": c["proposals"],
                "approved": c["approved"],
                "edited": c["edited"],
                "rejected": c["rejected"],
                "open": c["open"],
                "agreement_rate": round(c["approved"] / decided, 4) if decided else None,
                "rejection_reasons": dict(reasons[(workflow, tool)]),
            }
        )
    return out


def volumes(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Jobs per workflow and status."""
    counts: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for workflow, status, n in session.execute(
        select(Job.workflow, Job.status, func.count())
        .where(_window(since))
        .group_by(Job.workflow, Job.status)
    ):
        counts[workflow][status] = n
    return [
        {"workflow": w, "total": sum(by.values()), "by_status": dict(sorted(by.items()))}
        for w, by in sorted(counts.items())
    ]


def tally(
    session: Session, since: datetime | None = None, shadow: list[dict[str, Any]] | None = None
) -> dict[str, Tally]:
    """The raw counts per workflow of the jobs created since `since` (None: all time)."""
    found: dict[str, Tally] = collections.defaultdict(Tally)
    window = _window(since)
    for wf, status, n, retries in session.execute(
        select(Job.workflow, Job.status, func.count(), func.coalesce(func.sum(Job.retries), 0))
        .where(window)
        .group_by(Job.workflow, Job.status)
    ):
        found[wf].by_status[status] = int(n)
        found[wf].retries += int(retries)
    human = (Escalation.job_id == Job.id) & (Escalation.reason != SHADOW_REASON)
    for wf, n in session.execute(
        select(Job.workflow, func.count(func.distinct(Job.id)))
        .join(Escalation, human)
        .where(window, Job.status.in_(SETTLED))
        .group_by(Job.workflow)
    ):
        found[wf].escalated_settled = int(n)
    for wf, reason, n in session.execute(
        select(Job.workflow, Escalation.reason, func.count())
        .join(Escalation, human)
        .where(window)
        .group_by(Job.workflow, Escalation.reason)
    ):
        found[wf].reasons[reason] = int(n)
    retried = func.coalesce(func.sum(case((ToolCall.attempt > 1, 1), else_=0)), 0)
    for wf, outcome, n, again in session.execute(
        select(Job.workflow, ToolCall.outcome, func.count(), retried)
        .join(ToolCall, ToolCall.job_id == Job.id)
        .where(window)
        .group_by(Job.workflow, ToolCall.outcome)
    ):
        found[wf].tool_calls[outcome] = int(n)
        found[wf].tool_calls_retried += int(again)
    for wf, tier, outcome, hit, n, cost in session.execute(
        select(
            Job.workflow,
            ModelCall.tier,
            ModelCall.outcome,
            ModelCall.cache_hit,
            func.count(),
            func.coalesce(func.sum(ModelCall.cost_usd), 0),
        )
        .join(ModelCall, ModelCall.job_id == Job.id)
        .where(window)
        .group_by(Job.workflow, ModelCall.tier, ModelCall.outcome, ModelCall.cache_hit)
    ):
        if hit:
            found[wf].cache_hits += int(n)
        else:
            found[wf].model_calls[(tier, outcome)] += int(n)
        found[wf].spend += Decimal(str(cost))
    for wf, created, done in session.execute(
        select(Job.workflow, Job.created_at, func.min(JobEvent.at))
        .join(JobEvent, JobEvent.job_id == Job.id)
        .where(window, JobEvent.to_status == lifecycle.COMPLETED)
        .group_by(Job.id, Job.workflow, Job.created_at)
    ):
        start, end = as_utc(created), as_utc(done)
        assert start is not None and end is not None
        found[wf].durations.append((end - start).total_seconds())
    for row in shadow if shadow is not None else shadow_agreement(session, since):
        found[row["workflow"]].shadow.update(
            {k: row[k] for k in ("proposals", "approved", "edited", "rejected", "open")}
        )
    return dict(found)


def escalation_reasons(per_workflow: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Escalations by reason, most frequent first, with the count per workflow."""
    rows: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for k in per_workflow:
        for reason, n in k["escalation"]["by_reason"].items():
            rows[reason][k["workflow"]] = n
    return sorted(
        (
            {"reason": r, "total": sum(by.values()), "by_workflow": dict(sorted(by.items()))}
            for r, by in rows.items()
        ),
        key=lambda row: (-row["total"], row["reason"]),
    )


def build(
    session: Session, since: datetime | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The whole report over the jobs created since `since` (None: all time)."""

    stages = {
        name: {"stage": wf.stage, "canary_percent": wf.canary_percent}
        for name, wf in current_policy().workflows.items()
    }
    shadow = shadow_agreement(session, since)
    tallies = tally(session, since, shadow)
    merged = Tally()
    for t in tallies.values():
        merged.merge(t)
    per_workflow = [kpis(wf, t) for wf, t in sorted(tallies.items())]
    return {
        "generated_at": (now or utcnow()).isoformat(),
        "since": since.isoformat() if since is not None else None,
        "rollout": stages,
        "workflows": per_workflow,
        "total": kpis(ALL, merged),
        "escalation_reasons": escalation_reasons(per_workflow),
        "shadow": shadow,
        "volumes": [
            {
                "workflow": k["workflow"],
                "total": k["jobs"]["total"],
                "by_status": k["jobs"]["by_status"],
            }
            for k in per_workflow
        ],
    }


# --- the text forms (the terminal table and the HTML share them) ---------------------------


def fmt_usd(value: str | Decimal | None) -> str:
    """A dollar amount with the precision small model costs need, or the dash."""
    if value is None:
        return DASH
    amount = Decimal(value)
    if amount == 0:
        return "$0.00"
    places = 2 if abs(amount) >= 1 else 4 if abs(amount) >= Decimal("0.01") else 6
    return f"${amount:,.{places}f}"


def fmt_duration(seconds: float | None) -> str:
    """4.2s, 3m 12s, 2h 05m, 1d 3h; or the dash."""
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def fmt_number(value: float | None, digits: int = 2) -> str:
    """A plain number, or the dash."""
    return DASH if value is None else f"{value:.{digits}f}"


def fmt_ratio(part: int, whole: int) -> str:
    """66.7% (2/3), from the counts themselves (not the rounded rate); the dash for 0/0."""
    return f"{part / whole:.1%} ({part}/{whole})" if whole else DASH


# The counts each rate divides, per KPI family.
RATIO_PARTS = {
    "escalation": ("escalated", "settled"),
    "tool_calls": ("ok", "total"),
    "schema": ("ok", "answered"),
    "shadow": ("approved", "decided"),
}


def ratio_text(k: dict[str, Any], family: str) -> str:
    """One column's rate of a KPI family as text, e.g. ratio_text(k, "escalation")."""
    part, whole = RATIO_PARTS[family]
    return fmt_ratio(k[family][part], k[family][whole])


# (label, cell) per KPI row; each cell reads one column's KPIs (see `kpis`).
_ROWS: tuple[tuple[str, Any], ...] = (
    ("model spend", lambda k: fmt_usd(k["cost"]["total_usd"])),
    ("cost per completed task", lambda k: fmt_usd(k["cost"]["per_completed_usd"])),
    ("escalation rate", lambda k: ratio_text(k, "escalation")),
    ("tool-call success", lambda k: ratio_text(k, "tool_calls")),
    ("retries per run", lambda k: fmt_number(k["retries"]["per_run"])),
    ("tool calls retried", lambda k: str(k["retries"]["retried_tool_calls"])),
    ("schema adherence", lambda k: ratio_text(k, "schema")),
    ("time to done p50", lambda k: fmt_duration(k["time_to_done"]["p50_s"])),
    ("time to done p95", lambda k: fmt_duration(k["time_to_done"]["p95_s"])),
    ("shadow agreement", lambda k: ratio_text(k, "shadow")),
)


def kpi_rows(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The KPI table as text: column names (workflows, then "all") and (label, cells) rows."""
    cols = [*data["workflows"], data["total"]]
    stages = data["rollout"]

    def stage(k: dict[str, Any]) -> str:
        st = stages.get(k["workflow"])
        if st is None:
            return "" if k["workflow"] == ALL else DASH
        return str(st["stage"]) + (f" {st['canary_percent']}%" if st["stage"] == "canary" else "")

    statuses = sorted({s for k in cols for s in k["jobs"]["by_status"]})
    rows = [
        ("rollout stage", [stage(k) for k in cols]),
        ("jobs", [str(k["jobs"]["total"]) for k in cols]),
        *((f"  {s}", [str(k["jobs"]["by_status"].get(s, 0)) for k in cols]) for s in statuses),
        *((label, [cell(k) for k in cols]) for label, cell in _ROWS),
    ]
    return [k["workflow"] for k in cols], rows


def reason_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The escalations-by-reason table as text: header and rows (a count per workflow)."""
    workflows = [k["workflow"] for k in data["workflows"]]
    rows = [
        [r["reason"], *(str(r["by_workflow"].get(w, 0)) for w in workflows), str(r["total"])]
        for r in data["escalation_reasons"]
    ]
    return ["reason", *workflows, ALL], rows


def shadow_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The shadow proposals per workflow and tool as text: header and rows."""
    counts = ("proposals", "approved", "edited", "rejected", "open")
    rows = [
        [
            r["workflow"],
            r["tool"],
            *(str(r[c]) for c in counts),
            fmt_ratio(r["approved"], r["approved"] + r["edited"] + r["rejected"]),
        ]
        for r in data["shadow"]
    ]
    return ["workflow", "tool", *counts, "agreement"], rows


def window_text(data: dict[str, Any]) -> str:
    """Which jobs the report covers, in words."""
    if not data["since"]:
        return "all jobs (all time)"
    since = datetime.fromisoformat(data["since"])
    return f"jobs created since {since:%Y-%m-%d %H:%M:%S} UTC"
