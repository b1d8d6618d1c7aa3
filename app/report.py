"""The evidence for promoting a workflow: shadow-mode agreement per workflow and tool, and
job volumes per workflow (what `opsgate report` prints)."""

from __future__ import annotations

import collections
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Escalation, Job


def shadow_agreement(session: Session) -> list[dict[str, Any]]:
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
        .where(Escalation.reason == "shadow_proposal")
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
        if status == "open":
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


def volumes(session: Session) -> list[dict[str, Any]]:
    """Jobs per workflow and status."""
    counts: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for workflow, status, n in session.execute(
        select(Job.workflow, Job.status, func.count()).group_by(Job.workflow, Job.status)
    ):
        counts[workflow][status] = n
    return [
        {"workflow": w, "total": sum(by.values()), "by_status": dict(sorted(by.items()))}
        for w, by in sorted(counts.items())
    ]


def build(session: Session) -> dict[str, Any]:
    """The whole report."""
    from app.policy import current_policy

    stages = {
        name: {"stage": wf.stage, "canary_percent": wf.canary_percent}
        for name, wf in current_policy().workflows.items()
    }
    return {"rollout": stages, "shadow": shadow_agreement(session), "volumes": volumes(session)}
