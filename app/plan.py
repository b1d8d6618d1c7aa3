"""The Plan the planner must produce (the schema in DESIGN.md), validated by pydantic."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PlanEscalation(BaseModel):
    """The planner's own request for a human."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1)
    # The verifier rule that would refuse the write (the rules tier names it, so the
    # escalation says which rule the plan could never pass).
    rule: str | None = None


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
