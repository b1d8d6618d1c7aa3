"""The Plan the planner must produce (the schema in DESIGN.md), validated by pydantic."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
