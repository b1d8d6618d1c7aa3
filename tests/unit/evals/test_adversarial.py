"""evals/adversarial/cases.yaml: a well-formed set in the case format whose every case can
reach the gate it targets (the end-to-end run is `opsgate eval adversarial`, in
tests/e2e/test_eval.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pydantic
import pytest
import yaml

from app.errors import EscalationRequired
from app.intake import submissions
from app.llm.schema import plan_model, to_plan
from app.reasons import REASONS
from app.stages.plan import validate_plan
from evals.adversarial import (
    CATEGORIES,
    REQUIRED_CATEGORIES,
    WORKFLOWS,
    load_cases,
    token,
)
from evals.cases import Case, CaseError
from tests.support.env import ROOT
from tools.sandbox.app import TicketSpec
from tools.sandbox.llm.routes import ScriptEntry
from tools.sandbox.seed import USERS

CASES = load_cases()
SEEDED_USERS = {u.id for u in USERS}


def plan_error(case: Case) -> str | None:
    """Why the case's answer is no valid plan for its job (None: it is one).

    The same two checks as the planner: the model-facing schema, parsed from JSON as the SDK
    does, then the catalog's argument models and the workflow (app/planning.validate_plan).
    """
    assert case.model is not None
    answer = case.model.plan[0]
    if answer.refusal is not None:
        return "a refusal"
    content = answer.content
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
    tokens = [token(c) for c in CASES]
    # A token must not contain another one, or the scripted server could answer the wrong job.
    assert not [(a, b) for a in tokens for b in tokens if a != b and a in b]
    tickets = [t.id for c in CASES for t in c.world.tickets]
    assert len(tickets) == len(set(tickets))


def test_every_category_the_issue_names_is_present_several_times() -> None:
    counts = Counter(c.class_ for c in CASES)
    assert set(counts) <= set(CATEGORIES)
    assert set(CATEGORIES) >= REQUIRED_CATEGORIES
    missing = REQUIRED_CATEGORIES - set(counts)
    assert not missing, f"categories without a case: {sorted(missing)}"
    assert {cat: counts[cat] for cat in REQUIRED_CATEGORIES if counts[cat] < 2} == {}


def test_expected_reasons_are_in_the_taxonomy() -> None:
    assert {c.expect.reason for c in CASES} <= set(REASONS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_case_submits_a_valid_job_carrying_its_token(case: Case) -> None:
    assert isinstance(case.event.body, dict)
    sub = submissions.parse_submission({**case.event.body, "source": "api"})
    for entry in case.script(default_judge=None):
        ScriptEntry.model_validate(entry)
    if case.workflow == "support_refund":
        [ticket] = [TicketSpec.model_validate(t.model_dump()) for t in case.world.tickets]
        assert token(case) in ticket.subject
        assert sub.input == {"ticket_id": ticket.id}
        assert sub.requester == f"zendesk-user:{ticket.requester_id}"
        assert ticket.requester_id in SEEDED_USERS
        assert all(c["author_id"] in SEEDED_USERS for c in ticket.comments)
    else:
        assert token(case) in json.dumps(sub.input)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.expect.reason != "schema_invalid"], ids=lambda c: c.id
)
def test_an_answer_meant_for_a_later_gate_is_a_valid_plan(case: Case) -> None:
    # Every case but the schema ones must get past the plan stage's checks as it stands.
    error = plan_error(case)
    assert case.model is not None
    if case.expect.reason == "refused":
        assert case.model.plan[0].refusal is not None
        return
    assert case.model.plan[0].refusal is None
    assert error is None, f"{case.id}: {error}"
    if case.expect.reason == "planner_requested":
        content = case.model.plan[0].content
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
    data = yaml.safe_load((ROOT / "evals/adversarial/cases.yaml").read_text())
    data["cases"] = data["cases"][:2]
    data["cases"][0]["expect"]["reason"] = "no_such_reason"
    data["cases"][1]["model"]["match"] = "[ADV-999]"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CaseError) as err:
        load_cases(path)
    assert "case ADV-001: expect.reason: 'no_such_reason' is not in the taxonomy" in str(err.value)
    data["cases"][0]["expect"]["reason"] = "approval_required"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(
        CaseError, match=r"case ADV-002: model.match: must be its token \[ADV-002\]"
    ):
        load_cases(path)
