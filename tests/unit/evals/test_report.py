"""The arithmetic of `opsgate eval`'s report and baseline gate, on hand-made results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.report import (
    CaseResult,
    RunResult,
    baseline_of,
    compare,
    outcome_label,
    read_baseline,
    run_report,
    summarize,
)
from evals.runner import UnknownSet, runs_of


def case(
    case_id: str,
    expected: str,
    actual: str,
    *,
    correct: bool | None = None,
    workflow: str = "support_refund",
    reason_ok: bool | None = None,
    **extra: object,
) -> CaseResult:
    ok = expected == actual if correct is None else correct
    reason = actual.split(":", 1)[1] if actual.startswith("escalated:") else None
    return CaseResult(
        id=case_id,
        workflow=workflow,
        expected=expected,
        actual=actual,
        correct=ok,
        reason=reason,
        reason_ok=(expected == actual) if reason_ok is None else reason_ok,
        **extra,  # type: ignore[arg-type]
    )


CASES = [
    case(
        "C1",
        "completed",
        "completed",
        latency_s=1.0,
        cost_usd=0.01,
        model_answers=2,
        model_valid=1,
        retries=1,
    ),
    case("C2", "completed", "escalated:verification_failed", latency_s=2.0, cost_usd=0.03),
    case("C3", "escalated:approval_required", "escalated:approval_required", latency_s=3.0),
    case("C4", "escalated:approval_required", "escalated:verification_failed", latency_s=4.0),
    case(
        "C5",
        "escalated:verification_failed",
        "completed",
        latency_s=5.0,
        wrong_writes=2,
        writes_ok=False,
        workflow="it_request",
    ),
    case("C6", "completed", "failed", latency_s=None),
]


def test_the_counts_follow_each_case_s_expected_and_actual_outcome() -> None:
    # When the six cases are summed up
    got = summarize(CASES, stray_writes=1)
    # Then each count is the cases of its kind, stray writes count as wrong writes
    assert got["cases"] == 6
    assert got["correct"] == 2
    assert got["wrong_writes"] == 3
    assert got["correct_escalations"] == 1
    assert got["wrong_reason_escalations"] == 1
    assert got["missed_escalations"] == 1
    assert got["unnecessary_escalations"] == 1
    assert got["schema"] == {"valid": 1, "answers": 2, "adherence": 0.5}
    assert got["retries"] == 1
    assert got["cost_usd"] == pytest.approx(0.04)
    assert got["cost_per_case_usd"] == pytest.approx(0.04 / 6, abs=1e-6)
    # Two cases completed (C1 and C5): the cost per completed task divides by those
    assert got["cost_per_completed_usd"] == pytest.approx(0.02)


def test_latency_percentiles_interpolate_between_ranks_and_skip_unsettled_cases() -> None:
    got = summarize(CASES)["latency_s"]
    # 1..5 seconds (C6 has none): p50 is 3, p95 is 4.8
    assert got == {"p50": 3.0, "p95": 4.8}
    assert summarize([])["latency_s"] == {"p50": None, "p95": None}
    assert summarize([])["schema"]["adherence"] is None


def test_the_confusion_table_counts_expected_against_actual() -> None:
    got = summarize(CASES)["confusion"]
    assert got == {
        "completed": {"completed": 1, "escalated:verification_failed": 1, "failed": 1},
        "escalated:approval_required": {
            "escalated:approval_required": 1,
            "escalated:verification_failed": 1,
        },
        "escalated:verification_failed": {"completed": 1},
    }


def test_outcome_labels() -> None:
    assert outcome_label("completed", None) == "completed"
    assert outcome_label("escalated", "no_model") == "escalated:no_model"
    assert outcome_label("failed", None) == "failed"
    assert outcome_label("planning", None) == "other"


def test_the_run_report_splits_by_workflow_and_lists_the_wrong_cases() -> None:
    rep = run_report(RunResult("golden", CASES, stray_writes=["stripe POST /v1/refunds"]))
    assert set(rep["workflows"]) == {"support_refund", "it_request"}
    assert rep["workflows"]["it_request"]["missed_escalations"] == 1
    assert rep["all"]["wrong_writes"] == 3
    assert [w["id"] for w in rep["wrong"]] == ["C2", "C4", "C5", "C6"]


def _reports(cases: list[CaseResult]) -> list[dict[str, object]]:
    return [run_report(RunResult("golden", cases))]


def test_the_gate_passes_an_unchanged_run_and_fails_a_regressed_case() -> None:
    clean = [c for c in CASES if c.correct]
    baseline = baseline_of(_reports(clean))  # type: ignore[arg-type]
    assert baseline["runs"]["golden"]["cases"]["C1"] == {
        "correct": True,
        "outcome": "completed",
        "reason": None,
        "rule": None,
        "writes_ok": True,
    }
    assert compare(_reports(clean), baseline).passed  # type: ignore[arg-type]

    # When C3 now escalates for another reason
    regressed = [clean[0], case("C3", "escalated:approval_required", "escalated:no_model")]
    gate = compare(_reports(regressed), baseline)  # type: ignore[arg-type]
    # Then the gate fails naming the case, and the count of correct outcomes dropped
    assert not gate.passed
    assert [c["id"] for c in gate.changed] == ["C3"]
    assert any("C3 was correct" in f for f in gate.failures)
    assert any("correct dropped from 2 to 1" in f for f in gate.failures)


def test_wrong_writes_fail_the_gate_even_when_the_baseline_had_them() -> None:
    reports = _reports(CASES)
    gate = compare(reports, baseline_of(reports))  # type: ignore[arg-type]
    assert not gate.changed
    assert gate.failures == ["golden: 2 wrong write(s)"]


def test_a_new_case_or_run_is_noted_not_failed() -> None:
    baseline = baseline_of(_reports(CASES[:1]))  # type: ignore[arg-type]
    gate = compare(_reports(CASES[:1] + [CASES[2]]), baseline)  # type: ignore[arg-type]
    assert gate.passed and [c["id"] for c in gate.changed] == ["C3"]
    gate = compare(_reports(CASES[:1]), {"version": 1, "runs": {}})  # type: ignore[arg-type]
    assert gate.passed and gate.notes == ["golden: not in the baseline (nothing to compare)"]


def test_a_baseline_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read baseline"):
        read_baseline(tmp_path / "missing.json")
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(ValueError, match="is not JSON"):
        read_baseline(tmp_path / "b.json")
    (tmp_path / "b.json").write_text(json.dumps({"cases": {}}))
    with pytest.raises(ValueError, match="has no `runs`"):
        read_baseline(tmp_path / "b.json")


def test_set_names_expand_to_their_runs() -> None:
    assert runs_of([]) == ["golden", "adversarial:judge-off", "adversarial:judge-on"]
    assert runs_of(["adversarial", "adversarial"]) == [
        "adversarial:judge-off",
        "adversarial:judge-on",
    ]
    with pytest.raises(UnknownSet, match="unknown set gold; known: golden, adversarial, or a"):
        runs_of(["gold"])
