"""The outcome stage: read the system back, confirm the change, move to the next step."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from app.audit import chain as audit
from app.controls.calls import CallRecorder
from app.errors import EscalationRequired
from app.jobs import lifecycle
from app.jobs.steps import StoredStep
from app.models import Job
from app.stages.execute import downstream_key
from app.stages.runner import JobView, agent_actor
from tools.base import Risk
from tools.catalog import get_tool
from verifiers.base import Verdict
from verifiers.chains import CHAINS


@dataclass(frozen=True)
class Outcome:
    """What the read-back needs from the first transaction: the step, and how many the plan has
    (so the second transaction need not load the plan again)."""

    step: StoredStep
    steps: int


class VerifyOutcomeStage:
    """Stage `verify_outcome`: executed -> ready (next step) or completed."""

    name = "verify_outcome"
    status = lifecycle.EXECUTED

    def prepare(self, session: Session, job: Job) -> Outcome:
        return Outcome(StoredStep.of(job.steps[job.current_step]), len(job.steps))

    def work(self, job: JobView, outcome: Outcome, rec: CallRecorder) -> Verdict:
        step = outcome.step
        chain = CHAINS.get(step.tool)
        if chain is None:
            if get_tool(step.tool).risk is Risk.READ:
                return Verdict(True, "no_read_back", f"{step.tool} changes nothing to read back")
            # Unreachable through the proposal stage (a write without a chain never runs);
            # kept so a write can never be confirmed by default.
            raise EscalationRequired(
                "outcome_mismatch",
                f"{step.tool} has no read-back: the change cannot be confirmed",
                {"tool": step.tool, "rule": "read_back_exists"},
            )
        verdict = chain.read_back(
            rec, step.args, step.result or {}, downstream_key(step.idempotency_key)
        )
        if not verdict.ok:
            raise EscalationRequired(
                "outcome_mismatch",
                verdict.detail,
                {"tool": step.tool, "rule": verdict.rule, **verdict.evidence},
            )
        return verdict

    def apply(self, session: Session, job: Job, outcome: Outcome, verdict: Verdict) -> None:
        step = outcome.step
        audit.append(
            session,
            job.id,
            "verdict",
            "verifier",
            dict(asdict(verdict), stage="outcome", step=step.step_id),
        )
        if job.current_step + 1 < outcome.steps:
            job.current_step += 1
            lifecycle.transition(
                session,
                job,
                lifecycle.READY,
                actor=agent_actor(),
                reason=f"{step.step_id} confirmed",
            )
        else:
            lifecycle.transition(
                session,
                job,
                lifecycle.COMPLETED,
                actor=agent_actor(),
                reason="every step done and confirmed",
            )
