"""Plan steps: the Plan the planner must produce (the schema in DESIGN.md, validated by
pydantic), each step's idempotency key, and `StoredStep`, the one shape in which a stored step
travels between the stages after planning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.models import PlanStep


def step_key(job_id: str, step_id: str, revision: int) -> str:
    """The step's idempotency key: `{job_id}:{step_id}`, plus the revision after the first."""
    base = f"{job_id}:{step_id}"
    return base if revision == 1 else f"{base}:r{revision}"


class PlanEscalation(BaseModel):
    """The planner's own request for a human."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1)
    # Set by the rules tier: the verifier rule that would refuse the write, its tool and
    # evidence. A `refusal` escalates as the verifier would (verification_failed, same rule)
    # at planning time, so no plan is made that is certain to fail its chain; otherwise the
    # rule is only named (nothing to do: already a member, already suspended, already paid).
    rule: str | None = None
    tool: str | None = None
    refusal: bool = False
    evidence: dict[str, Any] = Field(default_factory=dict)


class Step(BaseModel):
    """One proposed tool call; its id is only a label until opsgate stores the plan."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    tool: str
    args: dict[str, Any]
    rationale: str = ""
    evidence: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """A whole plan for one job."""

    model_config = ConfigDict(extra="forbid")

    workflow: str
    summary: str
    confidence: float = Field(ge=0.0, le=1.0)
    steps: list[Step] = Field(default_factory=list)
    escalate: PlanEscalation | None = None


@dataclass(frozen=True)
class ApprovalToken:
    """A reviewer's approval of one step, as stored (app.controls.approvals issues it)."""

    id: str
    token: str
    used: bool


@dataclass(frozen=True)
class StoredStep:
    """One step of a stored plan as a stage reads it from its row, inside the stage's first
    transaction, and carries it as plain data through the work outside any transaction:
    verify_proposal judges a plan of these, execute calls one, verify_outcome reads one back."""

    pk: int
    step_id: str
    revision: int
    tool: str
    args: dict[str, Any]
    args_hash: str
    # The step's own key (`step_key`); the downstream one is derived from it at the call.
    idempotency_key: str
    rationale: str = ""
    evidence: list[str] = field(default_factory=list)
    # What the call answered, once it succeeded (None before).
    result: dict[str, Any] | None = None
    # The newest approval of the step, when a reviewer gave one.
    approval: ApprovalToken | None = None

    @classmethod
    def of(cls, row: PlanStep, approval: ApprovalToken | None = None) -> StoredStep:
        """The step of `row`, detached from its session."""
        return cls(
            pk=row.id,
            step_id=row.step_id,
            revision=row.revision,
            tool=row.tool,
            args=dict(row.args),
            args_hash=row.args_hash,
            idempotency_key=row.idempotency_key,
            rationale=row.rationale or "",
            evidence=list(row.evidence or []),
            result=dict(row.result) if row.result is not None else None,
            approval=approval,
        )
