"""evals/adversarial/cases.yaml: a well-formed set whose every case can reach the gate it
targets (the end-to-end run is `opsgate eval adversarial`, in tests/e2e/test_eval.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pydantic
import pytest

from app import intake
from app.errors import EscalationRequired
from app.llm.schema import plan_model, to_plan
from app.planning import validate_plan
from app.reasons import REASONS
from evals.adversarial import (
    CATEGORIES,
    REQUIRED_CATEGORIES,
    WORKFLOWS,
    Case,
    load_cases,
)
from tools.sandbox.app import TicketSpec
from tools.sandbox.model_routes import ScriptEntry
from tools.sandbox.seed import USERS

CASES = load_cases()
SEEDED_USERS = {u.id for u in USERS}


def plan_error(case: Case) -> str | None:
    """Why the case's answer is no valid plan for its job (None: it is one).

    The same two checks as the planner: the model-facing schema, parsed from JSON as the SDK
    does, then the catalog's argument models and the workflow (app/planning.validate_plan).
    """
    content = case.model.content
    if content is None:
        return "a refusal"
    text = content if isinstance(content, str) else json.dumps(content)
    try:
        parsed = plan_model().model_validate_json(text)
    except pydantic.ValidationError as exc:
        return f"schema: {exc.errors()[0]['msg']}"
    try:
        validate_plan(to_plan(parsed), case.workflow)
    except EscalationRequired as exc:
        return f"catalog: {exc}"
    return None


def test_the_set_is_large_enough_and_covers_every_workflow() -> None:
    assert len(CASES) >= 55
    counts = Counter(c.workflow for c in CASES)
    assert set(counts) == set(WORKFLOWS), counts
    assert min(counts.values()) >= 10, counts


def test_case_ids_and_tokens_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    tokens = [c.token for c in CASES]
    # A token must not contain another one, or the scripted server could answer the wrong job.
    assert not [(a, b) for a in tokens for b in tokens if a != b and a in b]
    tickets = [c.ticket.id for c in CASES if c.ticket is not None]
    assert len(tickets) == len(set(tickets))


def test_every_category_the_issue_names_is_present_several_times() -> None:
    counts = Counter(c.category for c in CASES)
    assert set(counts) <= set(CATEGORIES)
    assert set(CATEGORIES) >= REQUIRED_CATEGORIES
    missing = REQUIRED_CATEGORIES - set(counts)
    assert not missing, f"categories without a case: {sorted(missing)}"
    assert {cat: counts[cat] for cat in REQUIRED_CATEGORIES if counts[cat] < 2} == {}


def test_expected_reasons_are_in_the_taxonomy() -> None:
    assert {c.expect.reason for c in CASES} <= set(REASONS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_case_submits_a_valid_job_carrying_its_token(case: Case) -> None:
    sub = intake.parse_submission(case.submission())
    ScriptEntry.model_validate(case.script_entry())
    if case.workflow == "support_refund":
        ticket = TicketSpec.model_validate(case.sandbox_ticket())
        assert case.token in ticket.subject
        assert sub.input == {"ticket_id": ticket.id}
        assert sub.requester == f"zendesk-user:{ticket.requester_id}"
        assert ticket.requester_id in SEEDED_USERS
        assert all(c["author_id"] in SEEDED_USERS for c in ticket.comments)
    else:
        assert case.token in json.dumps(sub.input)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.expect.reason != "schema_invalid"], ids=lambda c: c.id
)
def test_an_answer_meant_for_a_later_gate_is_a_valid_plan(case: Case) -> None:
    # Every case but the schema ones must get past the plan stage's checks as it stands.
    error = plan_error(case)
    if case.expect.reason == "refused":
        assert case.model.refusal is not None
        return
    assert case.model.refusal is None
    assert error is None, f"{case.id}: {error}"
    if case.expect.reason == "planner_requested":
        content = case.model.content
        assert isinstance(content, dict)
        assert content["escalate"] is not None or content["steps"] == []


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.expect.reason == "schema_invalid" and c.finding is None],
    ids=lambda c: c.id,
)
def test_an_answer_meant_for_the_schema_gate_is_refused_by_it(case: Case) -> None:
    assert plan_error(case) is not None, f"{case.id} is a valid plan"


def test_a_finding_explains_itself() -> None:
    # Cases where today's system does not do what the case expects: each says what it does.
    for case in CASES:
        if case.finding is not None:
            assert len(case.finding) > 40, case.id


def test_a_bad_file_is_refused_saying_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(
        "cases:\n"
        "- {id: ADV-001, category: refusal, workflow: it_request, title: t, why: w,\n"
        "   input: {request_type: password_reset, target_login: a@b.example},\n"
        "   requester: a@b.example, model: {refusal: cannot}, expect: {reason: no_such_reason}}\n"
    )
    with pytest.raises(pydantic.ValidationError, match="not in the taxonomy"):
        load_cases(path)
    path.write_text(
        "cases:\n"
        + "".join(
            "- {id: ADV-001, category: refusal, workflow: it_request, title: t, why: w,\n"
            "   input: {request_type: password_reset, target_login: a@b.example},\n"
            "   requester: a@b.example, model: {refusal: cannot}, expect: {reason: refused}}\n"
            for _ in range(2)
        )
    )
    with pytest.raises(pydantic.ValidationError, match="repeated case ids: ADV-001"):
        load_cases(path)
