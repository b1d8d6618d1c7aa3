"""The workflows opsgate runs: the built-in ones, and any module OPSGATE_WORKFLOW_MODULES
names. Intake validates input with them, the webhooks find theirs here, the plan stage reads
context and plans with them, the soft check weighs their signals against their policy."""

from __future__ import annotations

import functools
import importlib

from app.errors import InputError, PermanentError
from app.jobs.context import PlanningContext
from app.jobs.steps import Plan
from app.settings import get_settings
from app.workflows import invoice_exception, it_request, support_refund
from app.workflows.base import Workflow

BUILT_IN: tuple[Workflow, ...] = (
    support_refund.WORKFLOW,
    invoice_exception.WORKFLOW,
    it_request.WORKFLOW,
)


@functools.cache
def _load(modules: str) -> dict[str, Workflow]:
    found = {w.name: w for w in BUILT_IN}
    for path in (m.strip() for m in modules.split(",") if m.strip()):
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise PermanentError(
                f"OPSGATE_WORKFLOW_MODULES: cannot import {path!r} ({exc})"
            ) from exc
        workflow = getattr(module, "WORKFLOW", None)
        if not isinstance(workflow, Workflow):
            raise PermanentError(f"OPSGATE_WORKFLOW_MODULES: {path} has no WORKFLOW")
        if workflow.name in found:
            raise PermanentError(
                f"OPSGATE_WORKFLOW_MODULES: {path} declares {workflow.name!r} a second time"
            )
        found[workflow.name] = workflow
    return found


def workflows() -> dict[str, Workflow]:
    """Every workflow this process runs, by name."""
    return _load(get_settings().workflow_modules)


def get(name: str) -> Workflow:
    """The workflow of that name; PermanentError if opsgate runs none by that name."""
    found = workflows().get(name)
    if found is None:
        raise PermanentError(f"unknown workflow {name!r}; known: {', '.join(sorted(workflows()))}")
    return found


def submittable(name: str) -> Workflow:
    """The workflow a submission names; InputError (HTTP 422) if there is none."""
    found = workflows().get(name)
    if found is None:
        known = ", ".join(sorted(workflows()))
        raise InputError(f"unknown workflow {name!r}; known: {known}")
    return found


def for_salesforce(sobject: str) -> Workflow | None:
    """The workflow Salesforce outbound messages about this sObject type start."""
    return next((w for w in workflows().values() if w.salesforce_sobject == sobject), None)


def salesforce_sobjects() -> list[str]:
    return sorted(w.salesforce_sobject for w in workflows().values() if w.salesforce_sobject)


def zendesk_default() -> str:
    """The workflow a Zendesk ticket event starts (the first registered that Zendesk may)."""
    return next(w.name for w in workflows().values() if w.from_zendesk)


def from_zendesk(name: str) -> bool:
    """Whether Zendesk webhooks and triggers may start this workflow."""
    found = workflows().get(name)
    return found is not None and found.from_zendesk


def plan(workflow: str, context: PlanningContext) -> Plan | None:
    """Plan with the workflow's rules tier, or None when the rules do not recognize the
    request (or opsgate runs no workflow by that name)."""
    found = workflows().get(workflow)
    return found.plan(context) if found is not None else None
