"""The case format's loader and judge: the shipped golden set is valid and covers every class;
a bad case is refused naming its id and field; a model-planned case scripts its answers on
its own prompts; ledger entries become catalog writes."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from evals.cases import (
    CASES_FILE,
    GOLDEN_CLASSES,
    JUDGE_PROMPT,
    PLANNER_PROMPT,
    CaseError,
    Outcome,
    judge,
    load_cases,
    observed_write,
)


def raw_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def first(data: dict[str, Any], case_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["cases"] if c["id"] == case_id)
    return found


def test_the_shipped_set_is_valid_and_covers_every_class_and_workflow() -> None:
    cases = load_cases().cases
    # Issue 15's golden set: at least 150 cases, 60 support, 45 invoice, 45 IT, and in each
    # workflow cases the rules tier hands on to the model.
    counts = Counter(c.workflow for c in cases)
    assert len(cases) >= 150, counts
    assert counts["support_refund"] >= 60 and counts["invoice_exception"] >= 45, counts
    assert counts["it_request"] >= 45, counts
    model = Counter(c.workflow for c in cases if c.planned_by == "model")
    assert min(model[w] for w in counts) >= 10, model
    assert set(Counter(c.class_ for c in cases)) == set(GOLDEN_CLASSES)
    assert {c.workflow for c in cases} == {"support_refund", "invoice_exception", "it_request"}
    refunds = [c for c in cases if c.workflow == "support_refund"]
    assert {c.language for c in refunds} == {"en", "de", "fr", "es"}
    # Both outcomes in the refund classes: a system that escalates everything cannot pass.
    for cls in ("withdrawn_request", "policy_document", "request_lookalike"):
        assert "completed" in {c.expect.status for c in cases if c.class_ == cls}, cls


def test_the_golden_set_has_model_planned_cases_with_answers_on_their_own_prompts() -> None:
    cases = load_cases().cases
    planned = [c for c in cases if c.planned_by == "model"]
    assert planned and all(c.model is not None for c in planned)
    case = next(c for c in planned if c.id == "COR-001")
    [plan, verdict] = case.script()
    # The planner's answer only for this case's planner prompts (ticket 91001), a repair too;
    # the judge's for this case's soft check prompt, as often as it is asked.
    assert plan["match"] == [PLANNER_PROMPT, "91001"] and plan["times"] == -1
    assert plan["content"]["escalate"]["reason"]
    assert verdict["match"] == [JUDGE_PROMPT, "91001"] and verdict["times"] == -1
    assert verdict["content"]["supported"] is True
    assert all(c.script() == [] for c in cases if c.planned_by == "rules")


def test_planned_by_and_model_answers_must_agree(tmp_path: Path) -> None:
    data = raw_file()
    first(data, "COR-001")["planned_by"] = "rules"
    first(data, "COR-011").pop("model", None)
    first(data, "COR-011")["planned_by"] = "model"
    with pytest.raises(CaseError) as err:
        load_cases(write(tmp_path, data))
    assert "case COR-001: a model-planned case has `model` answers" in str(err.value)
    assert "case COR-011: a model-planned case has `model` answers" in str(err.value)


def test_a_scripted_answer_of_two_kinds_names_the_case(tmp_path: Path) -> None:
    data = raw_file()
    first(data, "COR-001")["model"]["plan"]["refusal"] = "I cannot help with that."
    with pytest.raises(CaseError) as err:
        load_cases(write(tmp_path, data))
    assert "case COR-001: model.plan.0" in str(err.value)
    assert "exactly one of content, refusal, status, raw" in str(err.value)


def test_a_reason_outside_the_taxonomy_names_the_case_and_field(tmp_path: Path) -> None:
    data = raw_file()
    first(data, "COR-001")["expect"]["reason"] = "not_a_reason"
    with pytest.raises(CaseError) as err:
        load_cases(write(tmp_path, data))
    assert "case COR-001: expect.reason" in str(err.value)
    assert "not in the taxonomy" in str(err.value)


def test_an_unknown_field_names_the_case_and_field(tmp_path: Path) -> None:
    data = raw_file()
    first(data, "COR-042")["world"]["okta_users"][0]["statuss"] = "ACTIVE"
    with pytest.raises(CaseError) as err:
        load_cases(write(tmp_path, data))
    assert "case COR-042: world.okta_users.0.statuss" in str(err.value)


def test_an_event_about_a_record_outside_the_world_is_refused(tmp_path: Path) -> None:
    data = raw_file()
    first(data, "COR-003")["event"]["body"]["detail"]["id"] = "4821"
    with pytest.raises(CaseError) as err:
        load_cases(write(tmp_path, data))
    assert "case COR-003" in str(err.value) and "ticket:4821" in str(err.value)


def test_a_completed_case_without_writes_is_refused(tmp_path: Path) -> None:
    data = raw_file()
    first(data, "COR-037")["expect"]["writes"] = []
    with pytest.raises(CaseError, match=r"case COR-037: expect: .*names the writes"):
        load_cases(write(tmp_path, data))


def test_two_cases_sharing_a_record_are_refused(tmp_path: Path) -> None:
    data = raw_file()
    clone = copy.deepcopy(first(data, "COR-034"))
    clone["id"] = "COR-999"
    data["cases"].append(clone)
    with pytest.raises(CaseError) as err:
        load_cases(write(tmp_path, data))
    assert "case COR-999: world: charge:ch_cor034a is also in case COR-034" in str(err.value)


def test_a_malformed_outbound_message_names_the_case(tmp_path: Path) -> None:
    data = raw_file()
    first(data, "COR-051")["event"]["body"] = "<soapenv:Envelope>"
    with pytest.raises(CaseError, match=r"case COR-051: event: .*not well-formed XML"):
        load_cases(write(tmp_path, data))


def ledger(system: str, method: str, path: str, body: Any) -> dict[str, Any]:
    return {"system": system, "method": method, "path": path, "body": body}


def test_ledger_entries_become_the_catalog_writes_they_carry_out() -> None:
    refund = observed_write(
        ledger(
            "stripe",
            "POST",
            "/v1/refunds",
            {"charge": "ch_x1", "amount": "2500", "reason": "duplicate", "metadata[job]": "j"},
        )
    )
    assert refund is not None
    assert (refund.tool, refund.args["amount"], refund.subject) == ("stripe.refund", 2500, "ch_x1")
    note = observed_write(
        ledger(
            "zendesk",
            "PUT",
            "/api/v2/tickets/91001.json",
            {"ticket": {"comment": {"body": "done", "public": False}}},
        )
    )
    assert note is not None and (note.tool, note.subject) == ("zendesk.add_comment", "ticket:91001")
    reset = observed_write(
        ledger("okta", "POST", "/api/v1/users/00ucor042Xq7Lm2Pz0h7/lifecycle/reset_password", None)
    )
    assert reset is not None and reset.tool == "okta.reset_password"
    hold = observed_write(
        ledger(
            "salesforce",
            "PATCH",
            "/services/data/v61.0/sobjects/Invoice__c/a01Dn00Cor051InAAA",
            {"Status__c": "On Hold"},
        )
    )
    assert hold is not None and hold.tool == "salesforce.update_invoice"


def test_judge_wants_each_expected_write_exactly_once_and_nothing_else() -> None:
    case = next(c for c in load_cases().cases if c.id == "COR-034")
    refund = ledger(
        "stripe",
        "POST",
        "/v1/refunds",
        {"charge": "ch_cor034a", "amount": "2500", "reason": "requested_by_customer"},
    )
    note = ledger(
        "zendesk",
        "PUT",
        "/api/v2/tickets/91034.json",
        {"ticket": {"comment": {"body": "opsgate refunded", "public": False}}},
    )
    writes = [w for w in map(observed_write, [refund, note]) if w is not None]
    done = Outcome(status="completed")
    assert judge(case, done, writes) == []
    twice = judge(case, done, [*writes, writes[0]])
    assert any("applied 2 times" in p for p in twice)
    public = [writes[0], observed_write({**note, "body": {"ticket": {"comment": {"body": "x"}}}})]
    problems = judge(case, done, [w for w in public if w is not None])
    assert any("public" in p for p in problems)
