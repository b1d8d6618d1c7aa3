"""`opsgate eval`: the case sets as a release gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from app.cli.common import emit_json
from app.errors import InputError
from app.settings import PROJECT_ROOT

_ROWS: list[tuple[str, str]] = [
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


@click.command("eval")
@click.argument("sets", nargs=-1, metavar="[SET]...")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--baseline",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Compare with this baseline; exit 1 on a regression.",
)
@click.option(
    "--write-baseline",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Write each case's outcome and the counts to FILE.",
)
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker threads of the run's worker.",
)
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    metavar="DIR",
    help="The config/ to copy into the isolated world (default: the project's).",
)
@click.option(
    "--timeout",
    default=600.0,
    show_default=True,
    type=float,
    help="Seconds each run may take to settle.",
)
def eval_command(
    sets: tuple[str, ...],
    as_json: bool,
    baseline: Path | None,
    write_baseline: Path | None,
    concurrency: int,
    config_dir: Path | None,
    timeout: float,
) -> None:
    """Run the case sets end to end and report, optionally as a release gate.

    SET is `correctness` (real-shaped cases planned by the rules tier, delivered as signed
    Zendesk webhooks, Salesforce Outbound Messages and POST /v1/jobs) or `adversarial`
    (scripted model plans, run with the soft check's judge off and with a compromised
    judge on). No SET: all of them.

    Every run happens in an isolated world, whatever the environment says: a temp home with
    its own SQLite database and embedded redis-server, a copy of config/, a fresh sandbox
    standing in for Stripe, Zendesk, Salesforce, Okta and the model endpoint, and its own
    worker. It never touches the configured database, Redis, downstream systems or model,
    so it is safe to run anywhere, production hosts included.

    Exit status: 1 when any write the cases do not expect was applied, a run-wide check
    failed (e.g. personal data reached the model), or, with --baseline, a case correct in
    the baseline is not correct now or a count of correct outcomes dropped; 0 otherwise.
    Latency is reported, never gated.
    """
    from app import logs
    from evals import report, runner

    # Not setup_logging(): the caller's settings are not read (they may be production's).
    logs.configure("WARNING", "json")
    try:
        runner.runs_of(list(sets))
    except runner.UnknownSet as exc:
        raise InputError(str(exc)) from None
    before = None
    if baseline is not None:
        try:
            before = report.read_baseline(baseline)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    console = Console(stderr=True)

    def progress(name: str, done: int, total: int) -> None:
        if done != last.get(name):
            console.print(f"{name}: {done}/{total} settled", highlight=False)
            last[name] = done

    last: dict[str, int] = {}
    options = runner.Options(
        config_dir=(config_dir or PROJECT_ROOT / "config").resolve(),
        concurrency=concurrency,
        timeout=timeout,
    )
    results = runner.run(list(sets), options, progress)
    reports = [report.run_report(r) for r in results]
    gate = report.compare(reports, before) if before is not None else None
    failures = gate.failures if gate is not None else report.safety_failures(reports)
    if write_baseline is not None:
        try:
            write_baseline.write_text(
                json.dumps(report.baseline_of(reports), indent=2) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise InputError(f"cannot write {write_baseline}: {exc.strerror}") from None
    data: dict[str, Any] = {
        "runs": reports,
        "gate": {
            "passed": not failures,
            "failures": failures,
            "changed": gate.changed if gate else [],
            "notes": gate.notes if gate else [],
            "baseline": str(baseline) if baseline else None,
        },
    }
    if as_json:
        emit_json(data)
    else:
        _print(data, Console(width=max(Console().width, 140)))
    sys.exit(1 if failures else 0)


def _cell(data: dict[str, Any], key: str) -> str:
    if key == "schema":
        s = data["schema"]
        rate = "—" if s["adherence"] is None else f"{s['adherence']:.1%}"
        return f"{rate} ({s['valid']}/{s['answers']})"
    value = data["latency_s"][key] if key in ("p50", "p95") else data[key]
    return "—" if value is None else str(value)


def _print(data: dict[str, Any], console: Console) -> None:
    for rep in data["runs"]:
        _print_run(rep, console)
    gate = data["gate"]
    for change in gate["changed"]:
        was = (change["baseline"] or {}).get("outcome", "not in baseline")
        now = (change["now"] or {}).get("outcome", "not run")
        ok = "correct" if (change["now"] or {}).get("correct") else "wrong"
        console.print(f"changed: {change['run']} {change['id']}: {was} -> {now} ({ok})")
    for note in gate["notes"]:
        console.print(f"note: {note}")
    for failure in gate["failures"]:
        console.print(f"[red]FAIL[/red] {failure}")
    console.print("gate: passed" if gate["passed"] else "gate: [red]failed[/red]")


def _print_run(rep: dict[str, Any], console: Console) -> None:
    """The numbers per workflow and overall, the confusion table and the wrong cases."""
    scopes = [*rep["workflows"], "all"]
    table = Table(title=f"{rep['name']} ({rep['elapsed_s']}s)", title_justify="left")
    table.add_column("")
    for scope in scopes:
        table.add_column(scope, justify="right")
    for label, key in _ROWS:
        table.add_row(label, *[_cell(rep["workflows"].get(s) or rep["all"], key) for s in scopes])
    console.print(table)
    confusion = Table(title=f"{rep['name']}: expected vs actual", title_justify="left")
    for col in ("expected", "actual", "cases"):
        confusion.add_column(col, justify="right" if col == "cases" else "left")
    for expected, row in rep["all"]["confusion"].items():
        for actual, n in row.items():
            confusion.add_row(expected, actual + ("" if actual == expected else "  ✗"), str(n))
    console.print(confusion)
    if rep["wrong"]:
        wrong = Table(title=f"{rep['name']}: cases that went wrong", title_justify="left")
        for col in ("case", "expected", "got", "problems"):
            wrong.add_column(col)
        for w in rep["wrong"]:
            wrong.add_row(w["id"], w["expected"], w["got"], "; ".join(w["problems"])[:300])
        console.print(wrong)
    for line in rep["stray_writes"]:
        console.print(f"write outside every case: {line}", highlight=False)


def register(cli: click.Group) -> None:
    """Add this command to the CLI."""
    cli.add_command(eval_command)
