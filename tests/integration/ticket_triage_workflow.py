"""ticket_triage: a throwaway workflow, declared in this one module as any workflow is.

A Zendesk ticket gets an internal note naming its subject. With its policy entry (in the
test's config/policy.yaml) and its policy document (config/policies/triage.md), this module
is everything opsgate needs to run it: tests/integration/test_new_workflow.py registers it
through OPSGATE_WORKFLOW_MODULES and drives it end to end; docs/workflows/adding.md walks
through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from app.controls.calls import CallRecorder
from app.jobs.context import PlanningContext
from app.jobs.steps import Plan, Step
from app.workflows.base import Workflow, WorkflowInput

NAME = "ticket_triage"


class TicketTriageInput(WorkflowInput):
    """The ticket to triage."""

    ticket_id: int = Field(gt=0)


def read_context(
    job_input: dict[str, Any],
    requester: str,
    rec: CallRecorder,
    seen: Mapping[str, Any] | None,
) -> PlanningContext:
    """The ticket, read through the catalog (the call recorder applies the gates)."""
    ticket = rec.tool("zendesk.get_ticket", {"ticket_id": job_input["ticket_id"]})["ticket"]
    return {"ticket": ticket}


def plan(context: PlanningContext) -> Plan | None:
    """An internal note naming the ticket's subject; nothing for a closed ticket."""
    ticket = context["ticket"]
    if ticket.get("status") == "closed":
        return None
    note = f"Triage: {ticket.get('subject') or 'no subject'}"
    return Plan(
        workflow=NAME,
        summary=f"Triage ticket {ticket['id']}",
        confidence=0.95,
        steps=[
            Step(
                tool="zendesk.add_comment",
                args={"ticket_id": ticket["id"], "body": note, "public": False},
                rationale=f"Every open ticket gets a triage note (ticket {ticket['id']}).",
                evidence=["policy:triage#notes"],
            )
        ],
    )


WORKFLOW = Workflow(
    name=NAME,
    input_model=TicketTriageInput,
    read_context=read_context,
    plan=plan,
    policy_doc="triage",
    signals=frozenset(),
    writes=("zendesk.add_comment",),
)
