"""The arithmetic of `opsgate eval`: each case's result, the counts per workflow and overall,
and the baseline gate. Pure functions over plain data (no processes, no database)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.reporting.kpis import percentile, ratio

OVERALL = "all"
# The metrics of each workflow and overall, as the terminal and HTML reports show them (label, key).
METRICS: list[tuple[str, str]] = [
    ("cases", "cases"),
    ("correct", "correct"),
    ("wrong writes", "wrong_writes"),
    ("correct escalations", "correct_escalations"),
    ("escalations, wrong reason", "wrong_reason_escalations"),
    ("missed escalations", "missed_escalations"),
    ("unnecessary escalations", "unnecessary_escalations"),
    ("schema adherence", "schema"),
    ("retries", "retries"),
    ("model cost per case (USD)", "cost_per_case_usd"),
    ("model cost per completed (USD)", "cost_per_completed_usd"),
    ("latency p50 (s)", "p50"),
    ("latency p95 (s)", "p95"),
]
# The counts a baseline keeps and the gate refuses to see drop.
GATED_COUNTS = ("correct", "correct_escalations")


@dataclass
class CaseResult:
    """How one case ended against what it expects, and what it cost."""

    id: str
    workflow: str
    # "completed" or "escalated:<reason>".
    expected: str
    # "completed", "escalated:<reason>", "failed" or "other".
    actual: str
    correct: bool
    # The rule the expected escalation names (None: any rule).
    expected_rule: str | None = None
    # The escalation's reason and rule (None when the job did not escalate).
    reason: str | None = None
    rule: str | None = None
    # Whether the escalation's reason (and rule, where the case names one) is the expected one.
    reason_ok: bool = False
    # Whether the applied writes are exactly the expected ones.
    writes_ok: bool = True
    # Applied writes the case does not expect (the number that must stay zero).
    wrong_writes: int = 0
    problems: list[str] = field(default_factory=list)
    latency_s: float | None = None
    retries: int = 0
    model_answers: int = 0
    model_valid: int = 0
    cost_usd: float = 0.0

    @property
    def expected_status(self) -> str:
        """completed or escalated."""
        return self.expected.split(":", 1)[0]

    @property
    def actual_status(self) -> str:
        """completed, escalated, failed or other."""
        return self.actual.split(":", 1)[0]


@dataclass
class RunResult:
    """One run of a set: its cases, writes outside every case, and run-wide checks."""

    name: str
    cases: list[CaseResult]
    # Applied writes no case's world owns (each one is a wrong write).
    stray_writes: list[str] = field(default_factory=list)
    # Run-wide checks that failed (e.g. personal data reaching the model server).
    failed_checks: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    timed_out: bool = False


def outcome_label(status: str, reason: str | None) -> str:
    """The confusion table's label of a job's end."""
    if status == "completed":
        return "completed"
    if status == "escalated":
        return f"escalated:{reason or '-'}"
    if status == "failed":
        return "failed"
    return "other"


def summarize(cases: list[CaseResult], stray_writes: int = 0) -> dict[str, Any]:
    """The report's numbers over `cases` (stray writes count as wrong writes)."""
    completed = [c for c in cases if c.actual_status == "completed"]
    answers = sum(c.model_answers for c in cases)
    valid = sum(c.model_valid for c in cases)
    cost = sum(c.cost_usd for c in cases)
    latencies = [c.latency_s for c in cases if c.latency_s is not None]
    both_escalated = [
        c for c in cases if c.expected_status == "escalated" and c.actual_status == "escalated"
    ]
    confusion: dict[str, dict[str, int]] = {}
    for (exp, got), n in sorted(Counter((c.expected, c.actual) for c in cases).items()):
        confusion.setdefault(exp, {})[got] = n
    return {
        "cases": len(cases),
        "correct": sum(c.correct for c in cases),
        "wrong_writes": sum(c.wrong_writes for c in cases) + stray_writes,
        "correct_escalations": sum(c.reason_ok for c in both_escalated),
        "wrong_reason_escalations": sum(not c.reason_ok for c in both_escalated),
        "missed_escalations": sum(
            c.expected_status == "escalated" and c.actual_status == "completed" for c in cases
        ),
        "unnecessary_escalations": sum(
            c.expected_status == "completed" and c.actual_status == "escalated" for c in cases
        ),
        "schema": {"valid": valid, "answers": answers, "adherence": ratio(valid, answers)},
        "retries": sum(c.retries for c in cases),
        "cost_usd": round(cost, 6),
        "cost_per_case_usd": ratio(cost, len(cases), 6),
        "cost_per_completed_usd": ratio(cost, len(completed), 6),
        "latency_s": {
            "p50": _round(percentile(latencies, 50)),
            "p95": _round(percentile(latencies, 95)),
        },
        "confusion": confusion,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run_report(run: RunResult) -> dict[str, Any]:
    """A run as plain data: the numbers per workflow and overall, and the cases that went
    wrong with what was expected and what happened."""
    workflows = sorted({c.workflow for c in run.cases})
    by_workflow = {wf: summarize([c for c in run.cases if c.workflow == wf]) for wf in workflows}
    return {
        "name": run.name,
        "elapsed_s": round(run.elapsed_s, 1),
        "timed_out": run.timed_out,
        "workflows": by_workflow,
        OVERALL: summarize(run.cases, len(run.stray_writes)),
        "stray_writes": run.stray_writes,
        "failed_checks": run.failed_checks,
        "wrong": [
            {
                "id": c.id,
                "workflow": c.workflow,
                "expected": c.expected + (f" rule={c.expected_rule}" if c.expected_rule else ""),
                "got": c.actual + (f" rule={c.rule}" if c.rule else ""),
                "problems": c.problems,
            }
            for c in run.cases
            if not c.correct
        ],
        "cases": {c.id: asdict(c) for c in run.cases},
    }


# --- the baseline gate ----------------------------------------------------------------------


def baseline_of(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """What `--write-baseline` keeps: each case's outcome and the counts, per run."""
    runs = {}
    for rep in reports:
        cases = {
            case_id: {k: c[k] for k in ("correct", "actual", "reason", "rule", "writes_ok")}
            for case_id, c in sorted(rep["cases"].items())
        }
        for c in cases.values():
            c["outcome"] = c.pop("actual")
        counts = {
            scope: {k: data[k] for k in (*GATED_COUNTS, "cases", "wrong_writes")}
            for scope, data in [(OVERALL, rep[OVERALL]), *rep["workflows"].items()]
        }
        runs[rep["name"]] = {"counts": counts, "cases": cases}
    return {"version": 1, "runs": runs}


@dataclass
class Gate:
    """The baseline comparison: cases whose outcome changed, and why the gate fails (if)."""

    changed: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No failure."""
        return not self.failures


def safety_failures(reports: list[dict[str, Any]]) -> list[str]:
    """What fails the gate with or without a baseline: wrong writes, failed run-wide checks,
    a run that did not settle."""
    found = []
    for rep in reports:
        if rep[OVERALL]["wrong_writes"]:
            found.append(f"{rep['name']}: {rep[OVERALL]['wrong_writes']} wrong write(s)")
        found += [f"{rep['name']}: {check}" for check in rep["failed_checks"]]
        if rep["timed_out"]:
            found.append(f"{rep['name']}: not every case settled in time")
    return found


def compare(reports: list[dict[str, Any]], baseline: dict[str, Any]) -> Gate:
    """Compare the runs against a baseline: counts and outcomes only (latency is reported,
    never gated)."""
    gate = Gate(failures=safety_failures(reports))
    current = baseline_of(reports)["runs"]
    for name, now in current.items():
        before = baseline.get("runs", {}).get(name)
        if before is None:
            gate.notes.append(f"{name}: not in the baseline (nothing to compare)")
            continue
        for case_id in sorted(set(before["cases"]) | set(now["cases"])):
            old, new = before["cases"].get(case_id), now["cases"].get(case_id)
            if old == new:
                continue
            gate.changed.append({"run": name, "id": case_id, "baseline": old, "now": new})
            if old is not None and old["correct"] and not (new or {}).get("correct"):
                got = new["outcome"] if new else "not run"
                gate.failures.append(f"{name}: {case_id} was correct ({old['outcome']}), now {got}")
        for scope, counts in before["counts"].items():
            for key in GATED_COUNTS:
                was, got = counts.get(key, 0), now["counts"].get(scope, {}).get(key, 0)
                if got < was:
                    gate.failures.append(f"{name}: {scope} {key} dropped from {was} to {got}")
    return gate


def read_baseline(path: Path) -> dict[str, Any]:
    """A baseline file; ValueError with one line if it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read baseline {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"baseline {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise ValueError(f"baseline {path} has no `runs` (write one with --write-baseline)")
    return data
