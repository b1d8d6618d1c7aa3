"""What every workflow declares in its own module: docs/workflows/adding.md walks through one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.controls.calls import CallRecorder
from app.errors import NotFound
from app.jobs.context import PlanningContext
from app.jobs.steps import Plan


class WorkflowInput(BaseModel):
    """Base of every workflow input: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


# Reads what the planner needs to see about a job: (the job's input, its requester, the stage's
# recorder, facts the stage already read) -> the context.
ContextReader = Callable[
    [dict[str, Any], str, CallRecorder, Mapping[str, Any] | None], PlanningContext
]
# The rules tier's planner: a plan, or None when the rules do not recognize the request (the
# model tiers plan it, if any is configured).
RulesPlanner = Callable[[PlanningContext], Plan | None]


@dataclass(frozen=True)
class Workflow:
    """Everything opsgate knows about one workflow. Its policy (tools, grants, approvals,
    rollout stage) is its section of config/policy.yaml; its settings are in config/."""

    name: str
    # What a submission's `input` must be.
    input_model: type[WorkflowInput]
    read_context: ContextReader
    plan: RulesPlanner
    # The policy document (config/policies/<doc>.md) the model planner and the soft check read.
    policy_doc: str
    # The soft-check signals that apply to its plans (names of verifiers.soft.SIGNALS).
    signals: frozenset[str]
    # The write tools its plans use; each has a verifier chain (verifiers.chains.CHAINS).
    writes: tuple[str, ...]
    # Where else it starts (besides POST /v1/jobs and `opsgate submit`): Zendesk ticket
    # webhooks and triggers, Salesforce outbound messages about this sObject type.
    from_zendesk: bool = False
    salesforce_sobject: str | None = None


def unless_missing(read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The record read, or None when the system says there is no such record or user."""
    try:
        return read()
    except NotFound:
        return None
