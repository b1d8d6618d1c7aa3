"""The verify stage: policy first for the whole plan, then the facts rule by rule. A plan
that waits for an approval escalates at once, unless a reviewer revised it: then its facts
are checked first, and only a revision that passed is put before a reviewer to approve."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.audit import chain as audit
from app.controls import approvals, gates, policy
from app.controls.calls import CallRecorder
from app.errors import EscalationRequired, TokenRefused
from app.jobs import lifecycle
from app.jobs.steps import StoredStep
from app.models import Job
from app.stages.plan import gather_context
from app.stages.runner import JobView, agent_actor
from app.stages.soft_check import history_of, judge_plan, request_text, ticket_history
from app.workflows import registry
from tools.base import Risk
from tools.catalog import get_tool
from verifiers.base import EarlierWrite, Facts, Verdict, run_chain
from verifiers.chains import CHAINS
from verifiers.common import COMMON_RULES
from verifiers.plan_rules import check_plan
from verifiers.soft import HistoryEvent, ProposedStep, SoftEvidence
from verifiers.zendesk.thread import read_comments


@dataclass(frozen=True)
class Proposal:
    """The plan this stage judges, read in its first transaction: the planner's summary and
    tier, the job's history, and the stored steps."""

    summary: str
    tier: str
    history: list[HistoryEvent]
    steps: list[StoredStep]


@dataclass(frozen=True)
class PolicyCheck:
    """The plan's policy decisions, and the first approval it waits for (None: no wait)."""

    decisions: list[policy.Decision]
    waiting: EscalationRequired | None = None


def decide_policy(job_id: str, workflow: str, steps: Sequence[StoredStep]) -> PolicyCheck:
    """Decide every step. A block anywhere escalates `policy_blocked` (no reviewer is asked to
    approve a plan that could never run); otherwise the first step whose approval does not
    hold is the wait (`approval_required`, or `shadow_proposal`), returned, not raised."""
    decisions = []
    waiting: EscalationRequired | None = None
    for step in steps:
        decision = policy.decide(workflow, step.tool, step.args, job_id)
        evidence = {
            "tool": step.tool,
            "step_id": step.step_id,
            "rule": decision.rule,
            "policy_version": decision.policy_version,
            **decision.evidence,
        }
        if decision.outcome == "block":
            raise EscalationRequired("policy_blocked", decision.detail, evidence)
        if decision.outcome == "approval_required":
            try:
                decision = gates.approved(job_id, step, decision)
            except EscalationRequired as exc:
                waiting = waiting or exc
        decisions.append(decision)
    return PolicyCheck(decisions, waiting)


def check_policy(job_id: str, workflow: str, steps: Sequence[StoredStep]) -> list[policy.Decision]:
    """`decide_policy`, escalating the approval the plan waits for, if it waits for one."""
    checked = decide_policy(job_id, workflow, steps)
    if checked.waiting is not None:
        raise checked.waiting
    return checked.decisions


def reviewer_revision(steps: Sequence[StoredStep]) -> bool:
    """Whether a write step of the plan is a reviewer's revision: the planner stores every
    step as revision 1; only a reviewer's decision (an edit or a revise of a step, and the
    later steps restated from it: app.human.revisions) makes the next."""
    return any(s.revision > 1 and get_tool(s.tool).risk is not Risk.READ for s in steps)


def verify_before_approval(
    job: JobView, steps: Sequence[StoredStep], checked: PolicyCheck, rec: CallRecorder
) -> EscalationRequired:
    """The wait of a plan with a reviewer's revision, once its facts passed: the same
    escalation with every verdict that ran (`verified`), so a reviewer is only ever asked to
    approve a revision that passed. A failing rule escalates `verification_failed` instead
    (raised by `check_facts`)."""
    assert checked.waiting is not None
    # Judged as they will be once approved: the approval asked for is what a rule such as
    # privileged_group_approved waits for, not a fact the revision fails.
    verdicts, _ = check_facts(job, steps, checked.decisions, rec, awaiting_approval=True)
    wait = checked.waiting
    evidence = dict(wait.evidence, verified=[_verdict_evidence(v) for v in verdicts])
    return EscalationRequired(wait.reason, wait.detail, evidence)


def _verdict_evidence(verdict: Verdict) -> dict[str, Any]:
    # Escalation evidence is a JSON column: anything a rule kept that JSON cannot hold is
    # shown as text rather than failing the escalation.
    safe = json.loads(json.dumps(verdict.evidence, default=str))
    return {"rule": verdict.rule, "ok": verdict.ok, "detail": verdict.detail, "evidence": safe}


def check_facts(
    job: JobView,
    steps: Sequence[StoredStep],
    decisions: list[policy.Decision],
    rec: CallRecorder,
    *,
    awaiting_approval: bool = False,
) -> tuple[list[Verdict], dict[str, Any]]:
    """Run each write step's rule chain against what the systems say now; returns the
    verdicts and every fact read (the soft check weighs them too). With `awaiting_approval`,
    a step still waiting for its approval is judged as approved (the approval is asked for
    only if everything passes, and its token is checked again before the call).

    A write tool without a chain fails closed: nothing unverified is ever written.
    """
    failure, verdicts = check_plan(steps)
    if failure is not None:
        raise EscalationRequired(
            "verification_failed", failure.detail, {"rule": failure.rule, **failure.evidence}
        )
    seen: dict[str, Any] = {}
    for step, decision in zip(steps, decisions, strict=True):
        if get_tool(step.tool).risk is Risk.READ:
            continue
        chain = CHAINS.get(step.tool)
        if chain is None:
            raise EscalationRequired(
                "verification_failed",
                f"{step.tool} has no verifier chain: it cannot be checked, so it is not run",
                {"tool": step.tool, "rule": "chain_exists", "step_id": step.step_id},
            )
        facts = Facts(
            step.tool,
            step.args,
            job.input,
            workflow=job.workflow,
            requester=job.requester,
            approved=decision.rule == "approved"
            or (awaiting_approval and decision.outcome == "approval_required"),
            earlier=[
                EarlierWrite(e.tool, e.args)
                for e in steps[: steps.index(step)]
                if get_tool(e.tool).risk is not Risk.READ
            ],
        )
        failure, ran = run_chain(COMMON_RULES, facts)
        if failure is None:
            chain.gather(rec, facts)
            failure, more = run_chain(chain.rules, facts)
            ran += more
        verdicts.extend(ran)
        if failure is not None:
            raise EscalationRequired(
                "verification_failed",
                failure.detail,
                {
                    "tool": step.tool,
                    "step_id": step.step_id,
                    "rule": failure.rule,
                    **failure.evidence,
                },
            )
        seen.update(facts.data)
    return verdicts, seen


def human_approved(
    job_id: str, steps: Sequence[StoredStep], decisions: list[policy.Decision]
) -> bool:
    """Whether a reviewer approved a step of this plan (a token that holds for it now)."""
    for step, decision in zip(steps, decisions, strict=True):
        if decision.rule == "approved":
            return True
        if step.approval is not None:
            try:
                approvals.authorize(
                    step.approval, approvals.action_hash(job_id, step, decision.policy_version)
                )
            except TokenRefused:
                continue
            return True
    return False


def soft_check(
    job: JobView,
    plan: Proposal,
    history: list[HistoryEvent],
    facts: dict[str, Any],
    rec: CallRecorder,
) -> Verdict:
    """Judge the plan's grounding; below the workflow's threshold, escalate `low_confidence`."""
    context = gather_context(job, rec, seen=facts)
    if context.get("ticket"):
        # The refund's chain read the comments already (one read serves both).
        comments = facts.get("comments")
        if comments is None:
            comments = read_comments(rec, context["ticket"])
        history = history + ticket_history(job.id, context["ticket"], comments)
    steps = plan.steps
    workflow = registry.get(job.workflow)
    evidence = SoftEvidence(
        workflow=job.workflow,
        job_input=job.input,
        requester=job.requester,
        request_text=request_text(job.workflow, job.input, context),
        context=context,
        summary=plan.summary,
        steps=[
            ProposedStep(tool=s.tool, args=s.args, rationale=s.rationale, evidence=s.evidence)
            for s in steps
        ],
        history=history,
        facts=facts,
        policy_doc=workflow.policy_doc,
        signals=workflow.signals,
    )
    verdict = judge_plan(evidence, plan.tier, rec)
    if not verdict.ok:
        first_write = next((s for s in steps if get_tool(s.tool).risk is not Risk.READ), steps[0])
        raise EscalationRequired(
            "low_confidence",
            verdict.detail,
            {"step_id": first_write.step_id, "rule": "soft_check", **verdict.evidence},
        )
    return verdict


class VerifyProposalStage:
    """Stage `verify_proposal`: planned -> ready."""

    name = "verify_proposal"
    status = lifecycle.PLANNED

    def prepare(self, session: Session, job: Job) -> Proposal:
        tokens = approvals.latest_tokens(session, [s.id for s in job.steps])
        return Proposal(
            summary=job.plan_summary or "",
            tier=job.planner_tier or "rules",
            history=history_of(session, job),
            steps=[StoredStep.of(s, tokens.get(s.id)) for s in job.steps],
        )

    def work(
        self, job: JobView, plan: Proposal, rec: CallRecorder
    ) -> tuple[list[policy.Decision], list[Verdict]]:
        steps = plan.steps
        checked = decide_policy(job.id, job.workflow, steps)
        if checked.waiting is not None:
            if reviewer_revision(steps):
                # Policy still decides first (a block escalates before any fact is read);
                # a reviewer's revision then has its facts checked before approval is asked.
                raise verify_before_approval(job, steps, checked, rec)
            raise checked.waiting
        decisions = checked.decisions
        verdicts, facts = check_facts(job, steps, decisions, rec)
        if human_approved(job.id, steps, decisions):
            # The soft check exists to put doubtful plans before a person; one has seen
            # this plan and approved it, with the evidence on screen.
            verdicts.append(
                Verdict(True, "soft_check", "a reviewer approved this plan", {"judged_by": "human"})
            )
        else:
            verdicts.append(soft_check(job, plan, plan.history, facts, rec))
        return decisions, verdicts

    def apply(
        self,
        session: Session,
        job: Job,
        plan: Proposal,
        result: tuple[list[policy.Decision], list[Verdict]],
    ) -> None:
        decisions, verdicts = result
        for d in decisions:
            audit.append(session, job.id, "policy_decision", "policy", asdict(d))
        soft = verdicts[-1]
        audit.append(
            session,
            job.id,
            "verdict",
            "verifier",
            {
                "stage": "proposal",
                "passed": [v.rule for v in verdicts],
                "soft_check": {
                    "confidence": soft.confidence,
                    "judged_by": soft.evidence.get("judged_by"),
                    "threshold": soft.evidence.get("threshold"),
                    "reasons": soft.evidence.get("reasons"),
                },
            },
        )
        job.current_step = 0
        lifecycle.transition(
            session, job, lifecycle.READY, actor=agent_actor(), reason="proposal verified"
        )
