"""The one escalation taxonomy: every stage that hands a job to a human names one of these.

A reason says which gate stopped the job; the escalation's evidence says why. Counts by
reason are a metric (`opsgate_escalations`) and a KPI (`opsgate report`). The kill switch
parks jobs (status `paused`); it is not an escalation and has no reason here.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    "policy_blocked": "the policy forbids the action (tool, reason, value, requester)",
    "approval_required": "the action needs a human's approval token before it runs",
    "shadow_proposal": "the workflow runs in shadow: a reviewer executes or rejects the proposal",
    "verification_failed": "a deterministic rule found the facts in a system contradict the action",
    "low_confidence": "the soft check's confidence is below the workflow's threshold",
    "schema_invalid": "the planner's output is not a valid plan for this workflow",
    "refused": "the model refused to plan the request",
    "no_model": "the rules tier does not recognize the request and no model is configured",
    "outcome_mismatch": "reading the system back after a write did not confirm the change",
    "tool_error": "a tool failed for good (4xx, retries spent, idempotency conflict)",
    "circuit_open": "a downstream system refused calls for longer than the allowed wait",
    "budget_exceeded": "the daily model spend budget is used up",
    "partial": "a later step stopped after earlier steps had already written",
    "planner_requested": "the planner itself asked for a human (or proposed no action)",
}

# Reasons an operator may retry as they are: the stop was about the weather, not the action.
RETRYABLE = frozenset({"tool_error", "circuit_open", "outcome_mismatch"})


def check(reason: str) -> str:
    """The reason, if it is in the taxonomy; a programming error otherwise."""
    if reason not in REASONS:
        raise ValueError(f"escalation reason {reason!r} is not in the taxonomy (app/reasons.py)")
    return reason
