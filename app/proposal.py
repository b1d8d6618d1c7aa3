"""The verify stage: policy first for the whole plan, then the facts rule by rule."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from sqlalchemy.orm import Session

from app import approvals, audit, jobs, policy
from app.calls import CallRecorder
from app.errors import EscalationRequired
from app.models import Job
from app.runner import JobView, agent_actor
from verifiers.base import Facts, Verdict, run_chain
from verifiers.chains import CHAINS


def approved(job_id: str, step: dict[str, Any], decision: policy.Decision) -> policy.Decision:
    """The decision for a step that needs approval: allowed if its token holds for this exact
    action under the policy in force now, else EscalationRequired("approval_required")."""
    evidence = {
        "tool": step["tool"],
        "step_id": step["step_id"],
        "revision": step["revision"],
        "rule": decision.rule,
        "policy_version": decision.policy_version,
        **decision.evidence,
    }
    try:
        ok = approvals.authorize(
            step.get("approval"), approvals.action_hash(job_id, step, decision.policy_version)
        )
    except approvals.TokenRefused as exc:
        if step.get("approval") is not None:
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


def check_policy(job_id: str, workflow: str, steps: list[dict[str, Any]]) -> list[policy.Decision]:
    """Decide every step; the first block or unapproved approval need escalates with its rule."""
    decisions = []
    for step in steps:
        decision = policy.decide(workflow, step["tool"], step["args"], job_id)
        evidence = {
            "tool": step["tool"],
            "step_id": step.get("step_id"),
            "rule": decision.rule,
            "policy_version": decision.policy_version,
            **decision.evidence,
        }
        if decision.outcome == "block":
            raise EscalationRequired("policy_blocked", decision.detail, evidence)
        if decision.outcome == "approval_required":
            decision = approved(job_id, step, decision)
        decisions.append(decision)
    return decisions


def check_facts(job: JobView, steps: list[dict[str, Any]], rec: CallRecorder) -> list[Verdict]:
    """Run each write step's rule chain against what the systems say now."""
    verdicts: list[Verdict] = []
    for step in steps:
        chain = CHAINS.get(step["tool"])
        if chain is None:
            continue
        facts = Facts(step["tool"], step["args"], job.input)
        chain.gather(rec, facts)
        failure, ran = run_chain(chain.rules, facts)
        verdicts.extend(ran)
        if failure is not None:
            raise EscalationRequired(
                "verification_failed",
                failure.detail,
                {"tool": step["tool"], "rule": failure.rule, **failure.evidence},
            )
    return verdicts


class VerifyProposalStage:
    """Stage `verify_proposal`: planned -> ready."""

    name = "verify_proposal"
    status = jobs.PLANNED

    def prepare(self, session: Session, job: Job) -> list[dict[str, Any]]:
        return [
            {
                "step_id": s.step_id,
                "revision": s.revision,
                "tool": s.tool,
                "args": dict(s.args),
                "approval": approvals.latest_token(session, s.id),
            }
            for s in job.steps
        ]

    def work(
        self, job: JobView, steps: list[dict[str, Any]], rec: CallRecorder
    ) -> tuple[list[policy.Decision], list[Verdict]]:
        decisions = check_policy(job.id, job.workflow, steps)
        return decisions, check_facts(job, steps, rec)

    def apply(
        self,
        session: Session,
        job: Job,
        steps: Any,
        result: tuple[list[policy.Decision], list[Verdict]],
    ) -> None:
        decisions, verdicts = result
        for d in decisions:
            audit.append(session, job.id, "policy_decision", "policy", asdict(d))
        audit.append(
            session,
            job.id,
            "verdict",
            "verifier",
            {"stage": "proposal", "passed": [v.rule for v in verdicts]},
        )
        job.current_step = 0
        jobs.transition(session, job, jobs.READY, actor=agent_actor(), reason="proposal verified")
