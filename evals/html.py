"""`opsgate eval --html`: eval reports side by side on one self-contained HTML page, a column
per report (this run, and earlier `--json` reports beside it), so a team can compare models,
prompt versions and policy versions before promoting one.

The page is built from plain data in two steps: this module turns the reports into rows of
cells (every lookup tolerant of a key an older report lacks: it shows as "—"), and the
template in `evals/html_template.py` lays them out with autoescaping on (case text and
problems are untrusted)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.report import METRICS, OVERALL

if TYPE_CHECKING:
    from jinja2 import Template

MISSING = "—"
# A problem longer than this is cut (one case's model output must not swamp the page).
PROBLEM_CHARS = 2000

# What each report was made with (label, key of `meta`).
META: list[tuple[str, str]] = [
    ("planner endpoint", "endpoint"),
    ("planner model", "model"),
    ("judge endpoint", "judge_endpoint"),
    ("judge model", "judge_model"),
    ("planner prompt version", "prompt_version"),
    ("judge prompt version", "judge_prompt_version"),
    ("policy version", "policy_version"),
    ("config", "config_dir"),
    ("started", "started_at"),
    ("opsgate version", "opsgate_version"),
]


@dataclass
class Cell:
    """One table cell: its text (or lines), and CSS classes (bad, good, diff, missing)."""

    text: str = MISSING
    lines: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    # Shown in red under the text (a case's wrong writes).
    alert: str = ""

    @property
    def missing(self) -> bool:
        """No data: the report lacks the run, the case or the key."""
        return self.text == MISSING and not self.lines

    @property
    def css(self) -> str:
        """The class attribute's value."""
        return " ".join(self.classes)


@dataclass
class Row:
    """A labelled row of cells, one per report."""

    label: str
    cells: list[Cell]
    classes: list[str] = field(default_factory=list)


@dataclass
class Table:
    """A titled table whose columns are the reports."""

    title: str
    rows: list[Row]


@dataclass
class CaseRow:
    """One case of a run: what it expects, and how it ended in each report."""

    id: str
    workflow: str
    expected: str
    cells: list[Cell]
    differs: bool
    wrong: bool


@dataclass
class RunView:
    """Everything the page shows about one run name."""

    name: str
    status: Table
    scopes: list[Table]
    confusion: list[Row]
    cases: list[CaseRow]

    @property
    def differing(self) -> int:
        """Cases whose outcome is not the same in every report."""
        return sum(c.differs for c in self.cases)

    @property
    def wrong(self) -> int:
        """Cases wrong in at least one report."""
        return sum(c.wrong for c in self.cases)


@dataclass
class Column:
    """One report's header: its label and a one-line summary of what it ran."""

    label: str
    subtitle: str


# --- reading and writing ---------------------------------------------------------------------


def load_report(path: Path) -> dict[str, Any]:
    """A saved `opsgate eval --json` report; ValueError naming the file if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read report {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"report {path} is not JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"report {path} is not UTF-8 text (save it with --json)") from None
    if isinstance(data, dict) and isinstance(data.get("runs"), dict) and "version" in data:
        raise ValueError(
            f"{path} is a baseline, not a report (save a report with `opsgate eval --json`)"
        )
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(
            f"{path} is not an `opsgate eval --json` report (it has no list of `runs`)"
        )
    for i, run in enumerate(data["runs"]):
        if not isinstance(run, dict) or not isinstance(run.get("name"), str):
            raise ValueError(f"{path} is not an `opsgate eval --json` report (run {i} has no name)")
    return data


def write(path: Path, columns: list[tuple[str, dict[str, Any]]]) -> None:
    """Render `columns` to `path`, atomically (a reader sees the old page or the new one);
    ValueError with one line if it cannot be written."""
    page = render(columns)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open (not mkstemp) so the page gets the umask's usual mode, not 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None


def render(columns: list[tuple[str, dict[str, Any]]]) -> str:
    """One self-contained HTML page with each (label, report) as a column."""
    reports = [(label, _dict(rep)) for label, rep in columns]
    runs = [_runs_by_name(rep) for _, rep in reports]
    names = list(dict.fromkeys(name for by_name in runs for name in by_name))
    return _template().render(
        columns=[Column(label, _subtitle(_dict(rep.get("meta")))) for label, rep in reports],
        meta=_meta_rows([rep for _, rep in reports]) + _gate_rows([rep for _, rep in reports]),
        runs=[_run_view(name, [by_name.get(name) for by_name in runs]) for name in names],
        missing=MISSING,
    )


@cache
def _template() -> Template:
    from jinja2 import Environment, StrictUndefined

    from evals.html_template import PAGE

    env = Environment(
        autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(PAGE)


# --- the reports as rows of cells -------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _runs_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs = (r for r in _list(report.get("runs")) if isinstance(r, dict))
    return {str(r.get("name", "?")): r for r in runs}


def _text(value: Any) -> str:
    """A value as the page shows it: numbers without float noise, None as —."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, ".6f").rstrip("0").rstrip(".") or "0"
    return str(value)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _subtitle(meta: dict[str, Any]) -> str:
    model = meta.get("model") or meta.get("endpoint")
    prompt = meta.get("prompt_version")
    parts = [str(model) if model else "", f"prompt {prompt}" if prompt else ""]
    return " · ".join(p for p in parts if p)


def _mark_differences(cells: list[Cell]) -> list[Cell]:
    """Mark each cell that differs from the first report's (the one the others are beside),
    and each missing one."""
    for cell in cells:
        if cell.missing:
            cell.classes.append("missing")
    if cells and not cells[0].missing:
        for cell in cells[1:]:
            if not cell.missing and (cell.text, cell.lines) != (cells[0].text, cells[0].lines):
                cell.classes.append("diff")
    return cells


def _meta_rows(reports: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for label, key in META:
        cells = []
        for rep in reports:
            value = _dict(rep.get("meta")).get(key)
            if isinstance(value, dict):
                lines = [f"{k}: {_text(v)}" for k, v in sorted(value.items())]
                cells.append(Cell("", lines) if lines else Cell())
            else:
                cells.append(Cell(_text(value)))
        rows.append(Row(label, _mark_differences(cells)))
    return rows


def _gate_rows(reports: list[dict[str, Any]]) -> list[Row]:
    verdicts: list[Cell] = []
    baselines: list[Cell] = []
    changes: list[Cell] = []
    notes: list[Cell] = []
    for rep in reports:
        gate = _dict(rep.get("gate"))
        passed = gate.get("passed")
        failures = [str(f) for f in _list(gate.get("failures"))]
        if isinstance(passed, bool):
            verdicts.append(Cell("passed" if passed else "failed", failures, [_GOOD_BAD[passed]]))
        else:
            verdicts.append(Cell())
        baseline = gate.get("baseline")
        baselines.append(Cell(_text(baseline)))
        changed = [_change(_dict(c)) for c in _list(gate.get("changed"))]
        # Without a baseline nothing was compared: "0 changed" would claim too much.
        changes.append(Cell(str(len(changed)), changed) if baseline else Cell())
        lines = [str(n) for n in _list(gate.get("notes"))]
        notes.append(Cell("", lines) if lines else Cell())
    return [
        Row("gate", _mark_differences(verdicts)),
        Row("baseline", _mark_differences(baselines)),
        Row("changed since the baseline", _mark_differences(changes)),
        Row("notes", _mark_differences(notes)),
    ]


_GOOD_BAD = {True: "good", False: "bad"}


def _change(change: dict[str, Any]) -> str:
    was = _dict(change.get("baseline")).get("outcome", "not in baseline")
    now = _dict(change.get("now")).get("outcome", "not run")
    return f"{change.get('run', '?')} {change.get('id', '?')}: {was} → {now}"


def _run_view(name: str, runs: list[dict[str, Any] | None]) -> RunView:
    workflows = sorted({wf for run in runs if run for wf in _dict(run.get("workflows"))})
    scopes = [(OVERALL, "all workflows"), *[(wf, wf) for wf in workflows]]
    return RunView(
        name=name,
        status=_status(runs),
        scopes=[
            Table(title, [_metric_row(label, key, runs, scope) for label, key in METRICS])
            for scope, title in scopes
        ],
        confusion=_confusion(runs),
        cases=_cases(runs),
    )


def _status(runs: list[dict[str, Any] | None]) -> Table:
    elapsed: list[Cell] = []
    settled: list[Cell] = []
    checks: list[Cell] = []
    stray: list[Cell] = []
    for run in runs:
        if run is None:
            for cells in (elapsed, settled, checks, stray):
                cells.append(Cell())
            continue
        elapsed.append(Cell(_text(run.get("elapsed_s"))))
        timed_out = run.get("timed_out")
        if isinstance(timed_out, bool):
            settled.append(Cell("no: timed out", classes=["bad"]) if timed_out else Cell("yes"))
        else:
            settled.append(Cell())
        failed = [str(c) for c in _list(run.get("failed_checks"))]
        checks.append(Cell(str(len(failed)), failed, ["bad"] if failed else []))
        writes = [str(w) for w in _list(run.get("stray_writes"))]
        stray.append(Cell(str(len(writes)), writes, ["bad"] if writes else []))
    return Table(
        "run",
        [
            Row("elapsed (s)", _mark_differences(elapsed)),
            Row("every case settled", _mark_differences(settled)),
            Row("failed run-wide checks", _mark_differences(checks)),
            Row("writes outside every case", _mark_differences(stray)),
        ],
    )


def _metric_row(label: str, key: str, runs: list[dict[str, Any] | None], scope: str) -> Row:
    cells = []
    for run in runs:
        summary = None
        if run is not None:
            where = run if scope == OVERALL else _dict(run.get("workflows"))
            summary = where.get(scope)
        cell = Cell(_metric(summary, key) if isinstance(summary, dict) else MISSING)
        value = summary.get(key) if isinstance(summary, dict) else None
        if key == "wrong_writes" and _positive(value):
            cell.classes.append("bad")
        cells.append(cell)
    return Row(label, _mark_differences(cells))


def _metric(summary: dict[str, Any], key: str) -> str:
    if key == "schema":
        schema = _dict(summary.get("schema"))
        if not schema:
            return MISSING
        rate = schema.get("adherence")
        shown = f"{rate:.1%}" if isinstance(rate, int | float) else MISSING
        return f"{shown} ({_text(schema.get('valid'))}/{_text(schema.get('answers'))})"
    if key in ("p50", "p95"):
        return _text(_dict(summary.get("latency_s")).get(key))
    return _text(summary.get(key))


def _confusion(runs: list[dict[str, Any] | None]) -> list[Row]:
    tables = [_dict(_dict(run.get(OVERALL)).get("confusion")) if run else None for run in runs]
    pairs = {
        (str(exp), str(got))
        for table in tables
        if table
        for exp, row in table.items()
        for got in _dict(row)
    }
    rows = []
    for exp, got in sorted(pairs, key=lambda p: (p[0], p[1] != p[0], p[1])):
        cells = [
            Cell() if table is None else Cell(_text(_dict(table.get(exp)).get(got, 0)))
            for table in tables
        ]
        off = got != exp
        rows.append(Row(f"{exp} → {got}", _mark_differences(cells), ["off"] if off else []))
    return rows


def _outcome(case: dict[str, Any]) -> str:
    actual = _text(case.get("actual"))
    return actual + (f" rule={case['rule']}" if case.get("rule") else "")


def _expected(case: dict[str, Any]) -> str:
    expected = _text(case.get("expected"))
    rule = case.get("expected_rule")
    return expected + (f" rule={rule}" if rule else "")


def _case_cell(case: dict[str, Any] | None) -> Cell:
    if case is None:
        return Cell()
    correct = case.get("correct") is True
    lines = [
        p if len(p) <= PROBLEM_CHARS else p[:PROBLEM_CHARS] + "…"
        for p in (str(p) for p in _list(case.get("problems")))
    ]
    wrong_writes = case.get("wrong_writes")
    alert = f"{wrong_writes} wrong write(s)" if _positive(wrong_writes) else ""
    classes = ["good" if correct else "bad"]
    return Cell(f"{'✓' if correct else '✗'} {_outcome(case)}", lines, classes, alert)


def _cases(runs: list[dict[str, Any] | None]) -> list[CaseRow]:
    by_id = [
        None if run is None else {str(k): _dict(v) for k, v in _dict(run.get("cases")).items()}
        for run in runs
    ]
    ids = sorted({case_id for cases in by_id if cases for case_id in cases})
    rows = []
    for case_id in ids:
        found = [cases.get(case_id) if cases is not None else None for cases in by_id]
        known = [c for c in found if c is not None]
        # A report that ran the run but not this case counts as a different outcome.
        outcomes = {
            (_outcome(c), c.get("correct") is True) if c is not None else None
            for c, cases in zip(found, by_id, strict=True)
            if cases is not None
        }
        expected = list(dict.fromkeys(_expected(c) for c in known))
        rows.append(
            CaseRow(
                id=case_id,
                workflow=_text(known[0].get("workflow")),
                expected=" | ".join(expected),
                cells=_mark_differences([_case_cell(c) for c in found]),
                differs=len(outcomes) > 1 or len(expected) > 1,
                wrong=any(c.get("correct") is not True for c in known),
            )
        )
    rows.sort(key=lambda r: (not r.differs, not r.wrong, r.id))
    return rows
