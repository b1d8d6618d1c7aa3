"""The soft check: after the rules pass, judge the plan's grounding against a threshold.

The proposal stage calls `history_of` inside its first transaction (database reads) and
`judge_plan` in its work step (system reads and the model call, no transaction open).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.controls.calls import CallRecorder
from app.errors import JudgeUnavailable
from app.jobs.context import PlanningContext
from app.llm import judge as model_judge
from app.llm import retrieval
from app.models import Escalation, Job, PlanStep, StepStatus
from app.reading.language import dispute, withdrawal
from app.settings import get_settings
from tools.base import Risk
from tools.catalog import get_tool
from verifiers import config
from verifiers.base import Verdict
from verifiers.soft import HistoryEvent, Observation, SoftEvidence, score


def history_of(session: Session, job: Job) -> list[HistoryEvent]:
    """Earlier jobs about the same subject: writes they made and reviewers' rejections."""
    events: list[HistoryEvent] = []
    others = session.scalars(
        select(Job).where(
            Job.workflow == job.workflow, Job.external_id == job.external_id, Job.id != job.id
        )
    ).all()
    for other in others:
        writes = session.scalars(
            select(PlanStep.tool).where(
                PlanStep.job_id == other.id, PlanStep.status == StepStatus.SUCCEEDED
            )
        ).all()
        done = sorted({t for t in writes if get_tool(t).risk is not Risk.READ})
        if done:
            events.append(
                HistoryEvent(
                    "earlier_job",
                    f"job {other.id} already ran {', '.join(done)} for {job.external_id}",
                    conflicting=bool(set(done) & _planned_writes(job)),
                )
            )
        rejected = session.scalars(
            select(Escalation.note).where(
                Escalation.job_id == other.id, Escalation.decision == "reject"
            )
        ).all()
        for note in rejected:
            events.append(
                HistoryEvent(
                    "rejected",
                    f"a reviewer rejected job {other.id} for {job.external_id}: {note or ''}",
                    conflicting=True,
                )
            )
    return events


def _planned_writes(job: Job) -> set[str]:
    return {s.tool for s in job.steps if get_tool(s.tool).risk is not Risk.READ}


def ticket_history(
    job_id: str, ticket: dict[str, Any], comments: list[dict[str, Any]]
) -> list[HistoryEvent]:
    """What the ticket's comments (`verifiers.zendesk.thread.read_comments`) say: opsgate already
    acted, or the customer took the request back or disputed it (app.reading.language)."""
    events = []
    mine = job_id  # this job's own notes carry its id in their marker, whatever the key form
    requester = ticket.get("requester_id")
    for comment in comments[1:]:  # the first comment is the ticket's description
        body = comment.get("body") or ""
        if "[opsgate:" in body and mine not in body:
            events.append(
                HistoryEvent(
                    "opsgate_note",
                    "the ticket already carries a note from another opsgate job",
                    conflicting=True,
                )
            )
        elif comment.get("author_id") == requester and (withdrawal(body) or dispute(body)):
            found = withdrawal(body) or dispute(body)
            events.append(
                HistoryEvent(
                    "customer_comment",
                    "a later comment by the requester takes the request back or disputes it"
                    + (f': "{found.sentence[:160]}"' if found else ""),
                    conflicting=True,
                )
            )
    return events


def request_text(workflow: str, job_input: dict[str, Any], context: PlanningContext) -> str:
    """The request in its author's words: the ticket's text, or the submitted input."""
    ticket = context.get("ticket")
    if ticket:
        return f"{ticket.get('subject') or ''}\n{ticket.get('description') or ''}"
    return json.dumps(job_input, default=str, sort_keys=True)


def judge_plan(ev: SoftEvidence, planner_tier: str, rec: CallRecorder) -> Verdict:
    """The soft check's verdict. The deterministic scorer always judges; a model judge, when
    one is configured and answers, can only lower its confidence or add reasons, never raise
    it; a critical signal that does not hold vetoes the plan on its own, whatever the
    confidence. (The judge may share a compromised endpoint with the planner: a prompt-
    injected ticket must not be able to talk its way past the scorer.)"""
    threshold = config.current().soft_check.threshold_for(ev.workflow)
    scored = score(ev)
    vetoes = [o for o in scored.observations if o.critical and not o.ok]
    evidence: dict[str, Any] = {
        "threshold": threshold,
        "scorer_confidence": scored.confidence,
        "signals": [asdict(o) for o in scored.observations],
        "history": [asdict(h) for h in ev.history],
    }
    confidence, reasons, supported = scored.confidence, scored.reasons(), True
    judged_by = "scorer"
    tier = model_judge.configured_tier(planner_tier, get_settings().model_configured)
    if tier is not None:
        query = " ".join([ev.summary, *(s.get("rationale", "") for s in ev.steps)])
        signals = [
            f"{o.signal}: {'holds' if o.ok else 'missing'} ({o.detail})"
            for o in scored.observations
        ]
        untrusted = model_judge.untrusted_view(
            {"text": ev.request_text, "input": ev.job_input, "records": ev.context},
            [h.detail for h in ev.history],
            {"summary": ev.summary, "steps": ev.steps},
        )
        try:
            found = model_judge.judge(
                ev.workflow, tier, untrusted, signals, retrieval.retrieve(query), rec
            )
        except JudgeUnavailable as exc:
            evidence["judge_unavailable"] = str(exc)[:500]
        else:
            judged_by = f"model:{found.model}"
            evidence["judge"] = {
                "model": found.model,
                "tier": found.tier,
                "confidence": found.confidence,
                "supported": found.supported,
                "reasons": found.reasons,
            }
            supported = found.supported
            if found.confidence < confidence:
                confidence, reasons = found.confidence, found.reasons
            elif not found.supported:
                reasons = [*reasons, *found.reasons]
    if vetoes:
        reasons = [o.detail for o in vetoes] + [r for r in reasons if r not in _details(vetoes)]
    evidence.update(
        judged_by=judged_by,
        confidence=confidence,
        reasons=reasons,
        vetoed_by=[o.signal for o in vetoes],
    )
    ok = supported and confidence >= threshold and not vetoes
    detail = (
        f"confidence {confidence:.2f} (judged by {judged_by}) "
        f"{'meets' if ok else 'is below'} the threshold {threshold:.2f}"
    )
    if vetoes:
        detail = (
            f"critical signal {', '.join(o.signal for o in vetoes)} does not hold: "
            f"{'; '.join(o.detail for o in vetoes)[:300]}"
        )
    elif not supported:
        detail = f"the judge ({judged_by}) finds the plan unsupported: {'; '.join(reasons)[:300]}"
    return Verdict(ok, "soft_check", detail, evidence, confidence)


def _details(observations: list[Observation]) -> set[str]:
    return {o.detail for o in observations}
