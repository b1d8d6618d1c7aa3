"""The verify stage: policy first for the whole plan, then the facts rule by rule."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from app import audit, jobs, policy
from app.calls import CallRecorder
from app.errors import EscalationRequired
from app.models import Job
from app.runner import JobView, agent_actor
from verifiers.base import Facts, Verdict, run_chain
from verifiers.chains import CHAINS


def check_policy(workflow: str, steps: list[dict[str, Any]]) -> list[policy.Decision]:
    """Decide every step; the first block or approval need escalates with its rule."""
    decisions = []
    for step in steps:
        decision = policy.decide(workflow, step["tool"], step["args"])
        evidence = {
            "tool": step["tool"],
            "rule": decision.rule,
            "policy_version": decision.policy_version,
            **decision.evidence,
        }
        if decision.outcome == "block":
            raise EscalationRequired("policy_blocked", decision.detail, evidence)
        if decision.outcome == "approval_required":
            raise EscalationRequired("approval_required", decision.detail, evidence)
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
        return [{"tool": s.tool, "args": dict(s.args)} for s in job.steps]

    def work(
        self, job: JobView, steps: list[dict[str, Any]], rec: CallRecorder
    ) -> tuple[list[policy.Decision], list[Verdict]]:
        decisions = check_policy(job.workflow, steps)
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
