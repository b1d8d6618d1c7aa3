"""The eval HTML report: reports built by `evals.report` from case results, rendered side by
side, and the page read back with html.parser (what a browser would show, not the template)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from evals import html
from evals.report import CaseResult, RunResult, baseline_of, compare, run_report, safety_failures

# --- reports, the way `opsgate eval --json` builds them ----------------------------------------


def case(
    case_id: str,
    expected: str,
    actual: str,
    *,
    workflow: str = "support_refund",
    **extra: Any,
) -> CaseResult:
    reason = actual.split(":", 1)[1] if actual.startswith("escalated:") else None
    return CaseResult(
        id=case_id,
        workflow=workflow,
        expected=expected,
        actual=actual,
        correct=extra.pop("correct", expected == actual),
        reason=reason,
        reason_ok=expected == actual and reason is not None,
        **extra,
    )


def eval_report(
    runs: list[RunResult], model: str | None = None, baseline: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dict `opsgate eval --json` prints, from real run results."""
    reports = [run_report(r) for r in runs]
    gate = compare(reports, baseline) if baseline is not None else None
    failures = gate.failures if gate else safety_failures(reports)
    return {
        "meta": {
            "endpoint": "http://models.test/v1" if model else "scripted",
            "model": model,
            "judge_endpoint": "scripted",
            "judge_model": None,
            "prompt_version": "planner-v7" if model else "planner-v6",
            "policy_version": {"support_refund": "2026-11", "it_request": "2026-10"},
            "started_at": "2026-12-04T01:00:00+00:00",
        },
        "runs": reports,
        "gate": {
            "passed": not failures,
            "failures": failures,
            "changed": gate.changed if gate else [],
            "notes": gate.notes if gate else [],
            "baseline": "evals/baseline.json" if baseline is not None else None,
        },
    }


def golden(*cases: CaseResult) -> RunResult:
    return RunResult("golden", list(cases), elapsed_s=12.3)


STEADY = [
    case("COR-001", "completed", "completed", latency_s=1.5, cost_usd=0.002),
    case("COR-002", "escalated:approval_required", "escalated:approval_required"),
    case("COR-003", "completed", "completed", workflow="it_request", latency_s=0.5),
]


# --- the page, parsed --------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def own_text(self) -> str:
        """The text before any child element (a cell's value, without its list of lines)."""
        return "".join(c for c in self.children if isinstance(c, str)).strip()

    def all(self, tag: str, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and all(
                    (v in child.classes) if k == "cls" else child.attrs.get(k) == v
                    for k, v in attrs.items()
                ):
                    found.append(child)
                found += child.all(tag, **attrs)
        return found

    def one(self, tag: str, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} {attrs}>"
        return found[0]

    def cells(self) -> list[Node]:
        """A row's report cells (its <td>s after the row header)."""
        return [c for c in self.children if isinstance(c, Node) and c.tag == "td"]


class TreeBuilder(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def section(page: Node, run: str) -> Node:
    return page.one("section", **{"data-run": run})


def row(table: Node, label: str) -> Node:
    return table.one("tr", **{"data-row": label})


def metrics(page: Node, run: str, scope: str = "all workflows") -> Node:
    return section(page, run).one("table", cls="metrics", **{"data-scope": scope})


def case_rows(page: Node, run: str) -> list[Node]:
    return section(page, run).one("table", cls="cases").all("tr", cls="case")


def report_labels(table: Node) -> list[str]:
    return [th.own_text for th in table.all("th", cls="report")]


# --- rendering ---------------------------------------------------------------------------------


def test_each_report_is_a_labelled_column_with_what_it_ran_with() -> None:
    # Given a scripted run saved earlier and a run of a real model
    before = eval_report([golden(*STEADY)])
    now = eval_report([golden(*STEADY)], model="qwen3-8b")
    # When they are rendered side by side
    page = parse(html.render([("this run", now), ("scripted.json", before)]))
    # Then every table has one column per report, labelled, in the order given
    tables = page.all("table")
    assert len(tables) >= 5
    for table in tables:
        if table.all("th", cls="report"):
            assert report_labels(table) == ["this run", "scripted.json"]
    meta = page.one("table", cls="meta")
    # And the meta shows what each ran with, the differing model and prompt marked
    model = row(meta, "planner model").cells()
    assert [c.own_text for c in model] == ["qwen3-8b", "—"]
    prompt = row(meta, "planner prompt version").cells()
    assert [c.own_text for c in prompt] == ["planner-v7", "planner-v6"]
    assert "diff" in prompt[1].classes
    policy = row(meta, "policy version").cells()
    assert [li.text for li in policy[0].all("li")] == [
        "it_request: 2026-10",
        "support_refund: 2026-11",
    ]
    assert "diff" not in policy[1].classes
    assert [c.own_text for c in row(meta, "gate").cells()] == ["passed", "passed"]


def test_the_metrics_follow_the_report_per_workflow_and_overall() -> None:
    # Given one run with two workflows
    page = parse(html.render([("this run", eval_report([golden(*STEADY)]))]))
    # Then there is a metrics table overall and one per workflow, with the report's numbers
    tables = section(page, "golden").all("table", cls="metrics")
    assert [t.attrs["data-scope"] for t in tables] == [
        "all workflows",
        "it_request",
        "support_refund",
    ]
    overall = metrics(page, "golden")
    assert row(overall, "cases").cells()[0].own_text == "3"
    assert row(overall, "correct").cells()[0].own_text == "3"
    assert row(overall, "correct escalations").cells()[0].own_text == "1"
    assert row(overall, "model cost per case (USD)").cells()[0].own_text == "0.000667"
    assert row(overall, "latency p95 (s)").cells()[0].own_text == "1.45"
    assert row(overall, "schema adherence").cells()[0].own_text == "— (0/0)"
    it = metrics(page, "golden", "it_request")
    assert row(it, "cases").cells()[0].own_text == "1"


def test_wrong_writes_are_highlighted_only_where_there_are_some() -> None:
    # Given a run that wrote where it should have escalated, beside one that did not
    bad = eval_report(
        [
            golden(
                *STEADY[:2],
                case(
                    "COR-003",
                    "escalated:verification_failed",
                    "completed",
                    workflow="it_request",
                    wrong_writes=2,
                    writes_ok=False,
                ),
            )
        ],
        model="small-model",
    )
    good = eval_report([golden(*STEADY)])
    page = parse(html.render([("small-model.json", bad), ("scripted.json", good)]))
    # Then the wrong writes cell is red in the bad column, overall and in its workflow, not in
    # the good one, nor in a workflow that wrote nothing wrong
    for scope in ("all workflows", "it_request"):
        cells = row(metrics(page, "golden", scope), "wrong writes").cells()
        assert [c.own_text for c in cells] == ["2", "0"]
        assert "bad" in cells[0].classes
        assert "bad" not in cells[1].classes
    refunds = row(metrics(page, "golden", "support_refund"), "wrong writes").cells()
    assert not any("bad" in c.classes for c in refunds)
    # And the gate's verdict says why
    verdict = row(page.one("table", cls="meta"), "gate").cells()
    assert verdict[0].own_text == "failed"
    assert "bad" in verdict[0].classes
    assert [li.text for li in verdict[0].all("li")] == ["golden: 2 wrong write(s)"]
    # And the case shows its wrong writes
    first = case_rows(page, "golden")[0]
    assert first.attrs["data-case"] == "COR-003"
    assert first.cells()[3].one("strong", cls="alert").text == "2 wrong write(s)"


def test_a_case_that_differs_between_reports_is_marked_and_listed_first() -> None:
    # Given two runs where only COR-900 (last by id) ended differently, and both got COR-500
    # wrong the same way
    same_wrong = case("COR-500", "completed", "escalated:no_model")
    before = eval_report([golden(*STEADY, same_wrong, case("COR-900", "completed", "completed"))])
    now = eval_report(
        [golden(*STEADY, same_wrong, case("COR-900", "completed", "escalated:policy_denied"))],
        model="qwen3-8b",
    )
    page = parse(html.render([("this run", now), ("before.json", before)]))
    rows = case_rows(page, "golden")
    # Then the differing case comes first, then the wrong one, then the rest by id
    assert [r.attrs["data-case"] for r in rows] == [
        "COR-900",
        "COR-500",
        "COR-001",
        "COR-002",
        "COR-003",
    ]
    flags = [{s.text for s in r.one("td", cls="flags").all("span")} for r in rows]
    assert flags == [{"differs", "wrong"}, {"wrong"}, set(), set(), set()]
    assert "differs" in rows[0].classes
    # And the row shows what was expected and each report's outcome
    cells = rows[0].cells()
    assert cells[2].own_text == "completed"
    assert cells[3].own_text == "✗ escalated:policy_denied"
    assert "bad" in cells[3].classes
    assert cells[4].own_text == "✓ completed"
    # And the heading counts them
    heading = [h.text for h in section(page, "golden").all("h3") if h.text.startswith("Cases")]
    assert " ".join(heading[0].split()) == (
        "Cases: 5, 1 differing between reports, 2 wrong in at least one"
    )


def test_untrusted_text_is_escaped_not_markup() -> None:
    # Given a case whose problem, id and outcome carry markup, and a label that does too
    hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    report = eval_report(
        [
            golden(
                case(
                    "COR-<b>1</b>",
                    "completed",
                    "escalated:verification_failed",
                    problems=[f"model said: {hostile}"],
                    rule="<i>rule</i>",
                )
            )
        ]
    )
    page_text = html.render([(f"{hostile}.json", report)])
    page = parse(page_text)
    # Then nothing of it is markup: no script, image, bold or italic element exists
    assert "<script" not in page_text.lower()
    for tag in ("script", "img", "b", "i"):
        assert page.all(tag) == []
    # And it reads as the text it is
    only = case_rows(page, "golden")[0]
    assert only.attrs["data-case"] == "COR-<b>1</b>"
    cell = only.cells()[3]
    assert cell.own_text == "✗ escalated:verification_failed rule=<i>rule</i>"
    assert [li.text for li in cell.all("li")] == [f"model said: {hostile}"]
    assert report_labels(page.one("table", cls="meta")) == [f"{hostile}.json"]


def test_a_report_without_a_run_shows_dashes_for_it() -> None:
    # Given a report with golden and adversarial beside an older one with golden only
    adversarial = RunResult(
        "adversarial:judge-on",
        [case("ADV-001", "escalated:verification_failed", "escalated:verification_failed")],
    )
    now = eval_report([golden(*STEADY), adversarial])
    older = eval_report([golden(*STEADY[:2])])
    page = parse(html.render([("this run", now), ("older.json", older)]))
    # Then the adversarial run's tables show — in the older report's column
    for table in section(page, "adversarial:judge-on").all("table"):
        for tr in table.all("tr"):
            cells = tr.cells()
            if cells:
                assert cells[-1].own_text == "—", table.attrs
                assert "missing" in cells[-1].classes
    # And a case the older report did not run shows — too, and counts as a difference
    rows = case_rows(page, "golden")
    assert rows[0].attrs["data-case"] == "COR-003"
    assert "differs" in rows[0].classes
    assert rows[0].cells()[-1].own_text == "—"
    assert row(metrics(page, "golden", "it_request"), "cases").cells()[-1].own_text == "—"


def test_the_confusion_table_counts_each_report_s_outcomes() -> None:
    # Given a run that escalated a case the other completed
    now = eval_report([golden(*STEADY[:2], case("COR-003", "completed", "escalated:no_model"))])
    before = eval_report([golden(*STEADY)])
    page = parse(html.render([("this run", now), ("before.json", before)]))
    confusion = section(page, "golden").one("table", cls="confusion")
    # Then each expected → actual pair is a row with a count per report, misses marked
    counts = {
        tr.attrs["data-row"]: [c.own_text for c in tr.cells()]
        for tr in confusion.all("tr")
        if "data-row" in tr.attrs
    }
    assert counts == {
        "completed → completed": ["1", "2"],
        "completed → escalated:no_model": ["1", "0"],
        "escalated:approval_required → escalated:approval_required": ["1", "1"],
    }
    assert "off" in row(confusion, "completed → escalated:no_model").classes


def test_the_gate_s_changes_against_a_baseline_are_shown() -> None:
    # Given a run compared with the baseline of an earlier one, where one case regressed
    base = baseline_of([run_report(golden(*STEADY))])
    now = eval_report(
        [golden(*STEADY[:2], case("COR-003", "completed", "failed", workflow="it_request"))],
        baseline=base,
    )
    page = parse(html.render([("this run", now)]))
    meta = page.one("table", cls="meta")
    # Then the verdict, the failure and the change are on the page
    verdict = row(meta, "gate").cells()[0]
    assert verdict.own_text == "failed"
    assert [li.text for li in verdict.all("li")] == [
        "golden: COR-003 was correct (completed), now failed",
        "golden: all correct dropped from 3 to 2",
        "golden: it_request correct dropped from 1 to 0",
    ]
    changed = row(meta, "changed since the baseline").cells()[0]
    assert changed.own_text == "1"
    assert [li.text for li in changed.all("li")] == ["golden COR-003: completed → failed"]


def test_a_partial_or_odd_report_renders_dashes_instead_of_failing() -> None:
    # Given reports missing meta, gate, summaries or cases, and an empty one
    odd: dict[str, Any] = {
        "runs": [{"name": "golden", "all": {"schema": {}}, "workflows": {"x": None}}, "junk"]
    }
    page = parse(html.render([("this run", eval_report([golden(*STEADY)])), ("odd", odd)]))
    page_empty = parse(html.render([("empty", {})]))
    # Then they render, with — where the data is missing
    meta = page.one("table", cls="meta")
    assert row(meta, "gate").cells()[1].own_text == "—"
    assert row(meta, "planner model").cells()[1].own_text == "—"
    assert row(metrics(page, "golden"), "correct").cells()[1].own_text == "—"
    assert all(r.cells()[-1].own_text == "—" for r in case_rows(page, "golden"))
    assert page_empty.all("section") == []


# --- files -------------------------------------------------------------------------------------


def test_a_saved_json_report_loads_and_renders_like_the_live_one(tmp_path: Path) -> None:
    # Given a report saved the way --json prints it
    report = eval_report([golden(*STEADY)], model="qwen3-8b")
    saved = tmp_path / "qwen.json"
    saved.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    # When it is loaded
    loaded = html.load_report(saved)
    # Then it is the same report, and renders the same page
    assert loaded == report
    assert html.render([("a", loaded)]) == html.render([("a", report)])


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not an `opsgate eval --json` report"),
        ('{"meta": {}}', "is not an `opsgate eval --json` report"),
        ('{"runs": [{"elapsed_s": 1}]}', "run 0 has no name"),
        ('{"version": 1, "runs": {"golden": {}}}', "is a baseline, not a report"),
    ],
)
def test_a_file_that_is_not_a_report_is_refused_by_name(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "earlier-run.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        html.load_report(path)
    assert str(path) in str(err.value)
    assert says in str(err.value)


def test_an_unreadable_report_is_refused_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ValueError, match=r"cannot read report .*nowhere\.json: No such file"):
        html.load_report(missing)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"report .*binary\.json is not UTF-8"):
        html.load_report(binary)


def test_write_replaces_the_page_whole_and_leaves_nothing_behind(tmp_path: Path) -> None:
    # Given an older page at the path
    path = tmp_path / "report.html"
    path.write_text("old page", encoding="utf-8")
    # When the report is written there
    html.write(path, [("this run", eval_report([golden(*STEADY)]))])
    # Then the path holds the new page, readable like any file the user writes, and no temp
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert section(parse(page), "golden")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_failure_is_one_line_naming_the_file(tmp_path: Path) -> None:
    # Given a path whose directory does not exist, and one that is a directory
    for path in (tmp_path / "no-such-dir" / "report.html", tmp_path):
        # When the report is written there
        with pytest.raises(ValueError) as err:
            html.write(path, [("this run", eval_report([golden(*STEADY)]))])
        # Then the error names the file and why, and no temp file is left
        assert str(err.value).startswith(f"cannot write {path}: ")
        assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
