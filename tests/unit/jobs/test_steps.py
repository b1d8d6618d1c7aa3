"""app/jobs/steps.StoredStep: the one shape a stored step travels in between the stages."""

from __future__ import annotations

import dataclasses

import pytest

from app.controls import approvals
from app.jobs.steps import ApprovalToken, StoredStep, step_key
from app.models import PlanStep

ARGS = {"charge_id": "ch_1001", "amount": 4500, "currency": "usd", "reason": "duplicate"}


def row(**overrides: object) -> PlanStep:
    fields: dict[str, object] = {
        "id": 7,
        "job_id": "job-1",
        "step_id": "s1",
        "revision": 2,
        "position": 0,
        "tool": "stripe.refund",
        "args": dict(ARGS),
        "args_hash": "a" * 64,
        "rationale": "the customer was charged twice",
        "evidence": ["ticket:4821"],
        "idempotency_key": step_key("job-1", "s1", 2),
        "result": None,
    }
    fields.update(overrides)
    return PlanStep(**fields)


def test_a_stored_step_carries_its_row_detached() -> None:
    token = ApprovalToken("ap-1", "tok", used=False)
    stored = StoredStep.of(row(), token)
    assert (stored.pk, stored.step_id, stored.revision, stored.tool) == (
        7,
        "s1",
        2,
        "stripe.refund",
    )
    assert stored.idempotency_key == "job-1:s1:r2"
    assert (stored.rationale, stored.evidence, stored.approval) == (
        "the customer was charged twice",
        ["ticket:4821"],
        token,
    )
    assert stored.result is None
    # A copy: the work outside the transaction cannot change the row's JSON.
    stored.args["amount"] = 1
    assert row().args == ARGS
    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.tool = "stripe.get_charge"  # type: ignore[misc]


def test_missing_optional_columns_read_as_empty() -> None:
    stored = StoredStep.of(row(rationale=None, evidence=None, result={"id": "re_1"}))
    assert (stored.rationale, stored.evidence, stored.result) == ("", [], {"id": "re_1"})


def test_a_stored_step_hashes_as_its_row_and_as_the_stored_mapping() -> None:
    # Approval tokens name the action's hash: a token issued over the row (approvals.create)
    # must hold for the StoredStep the stages check it against, and for fixtures stored as
    # plain mappings by an earlier release.
    source = row()
    stored = StoredStep.of(source)
    mapping = {"step_id": "s1", "revision": 2, "tool": "stripe.refund", "args": dict(ARGS)}
    by_row = approvals.action_hash("job-1", source, "v1")
    assert approvals.action_hash("job-1", stored, "v1") == by_row
    assert approvals.action_hash("job-1", mapping, "v1") == by_row
    assert approvals.action_hash("job-1", stored, "v2") != by_row
