"""`opsgate eval`: the case sets as a release gate."""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from app.cli.common import emit_json
from app.errors import InputError
from app.settings import PROJECT_ROOT


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
    "--endpoint",
    metavar="URL",
    help="A real OpenAI-compatible endpoint (its /v1 base URL) that plans the cases the rules "
    "tier sends on, instead of each case's scripted answer; needs --model.",
)
@click.option("--model", "model_name", metavar="NAME", help="The model --endpoint serves.")
@click.option(
    "--judge-endpoint",
    metavar="URL",
    help="The soft check judge's own endpoint (default: --endpoint's, or the scripted one).",
)
@click.option(
    "--judge-model", metavar="NAME", help="The model --judge-endpoint serves (default: --model)."
)
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    metavar="VAR",
    help="The environment variable holding --endpoint's key (none needed for a local server).",
)
@click.option(
    "--judge-api-key-env",
    default="OPSGATE_JUDGE_API_KEY",
    show_default=True,
    metavar="VAR",
    help="The environment variable holding --judge-endpoint's key.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Also write the report as one HTML page, beside any --compare reports.",
)
@click.option(
    "--compare",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="REPORT",
    help="An earlier `--json` report to show beside this run in --html (repeatable).",
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
    endpoint: str | None,
    model_name: str | None,
    judge_endpoint: str | None,
    judge_model: str | None,
    api_key_env: str,
    judge_api_key_env: str,
    html_path: Path | None,
    compare: tuple[Path, ...],
    timeout: float,
) -> None:
    """Run the case sets end to end and report, optionally as a release gate.

    SET is `golden` (real-shaped cases delivered as signed Zendesk webhooks, Salesforce
    Outbound Messages and POST /v1/jobs, planned by the rules tier or, where it sends them
    on, by the model: each case's scripted competent answer, or the model at --endpoint),
    `adversarial` (scripted plans of a compromised model, run with the soft check's judge
    off and with a compromised judge on), or a YAML file in the case format
    (docs/evals.md). No SET: golden and adversarial.

    To compare two models or prompts, run each with --json to a file and render them side
    by side: `opsgate eval golden --endpoint URL --model B --html b.html --compare a.json`.

    Every run happens in an isolated world, whatever the environment says: a temp home with
    its own SQLite database and embedded redis-server, a copy of config/, a fresh sandbox
    standing in for Stripe, Zendesk, Salesforce, Okta and the model endpoint, and its own
    worker. It never touches the configured database, Redis, downstream systems or model
    (only the endpoints given here), so it is safe to run anywhere, production hosts included.

    Exit status: 1 when any write the cases do not expect was applied, a run-wide check
    failed (e.g. personal data reached the model), or, with --baseline, a case correct in
    the baseline is not correct now or a count of correct outcomes dropped; 0 otherwise.
    Latency is reported, never gated.
    """
    from app.telemetry import logs
    from evals import report, runner

    # Not setup_logging(): the caller's settings are not read (they may be production's).
    logs.configure("WARNING", "json")
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the world's processes are stopped
    # and its temp home removed, instead of a sandbox and a redis-server left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        runner.runs_of(list(sets))
    except runner.UnknownSet as exc:
        raise InputError(str(exc)) from None
    real = _endpoints(
        endpoint, model_name, judge_endpoint, judge_model, api_key_env, judge_api_key_env
    )
    earlier, before = _earlier_reports(compare, html_path, baseline)
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
        endpoint=real[0],
        judge_endpoint=real[1],
    )
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        results, versions = runner.run(list(sets), options, progress)
    except runner.UnknownSet as exc:
        raise InputError(str(exc)) from None
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
        "meta": {
            "endpoint": endpoint or "scripted",
            "model": model_name,
            "judge_endpoint": judge_endpoint or endpoint or "scripted",
            "judge_model": judge_model or model_name,
            "prompt_version": versions.get("prompts", {}).get("planner"),
            "judge_prompt_version": versions.get("prompts", {}).get("soft_check"),
            "policy_version": versions.get("policy", {}),
            "config_dir": str(options.config_dir),
            "started_at": started_at,
            "opsgate_version": _version(),
        },
        "runs": reports,
        "gate": {
            "passed": not failures,
            "failures": failures,
            "changed": gate.changed if gate else [],
            "notes": gate.notes if gate else [],
            "baseline": str(baseline) if baseline else None,
        },
    }
    if html_path is not None:
        try:
            _html().write(html_path, [("this run", data), *earlier])
        except ValueError as exc:
            raise InputError(str(exc)) from None
    if as_json:
        emit_json(data)
    else:
        _print(data, Console(width=max(Console().width, 140)))
    sys.exit(1 if failures else 0)


def _earlier_reports(
    compare: tuple[Path, ...], html_path: Path | None, baseline: Path | None
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any] | None]:
    """The --compare reports and the --baseline, read before anything runs."""
    from evals import report

    if compare and html_path is None:
        raise InputError("--compare shows earlier reports beside this run in --html; give --html")
    try:
        earlier = [(path.name, _html().load_report(path)) for path in compare]
        before = report.read_baseline(baseline) if baseline is not None else None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return earlier, before


def _endpoints(
    endpoint: str | None,
    model_name: str | None,
    judge_endpoint: str | None,
    judge_model: str | None,
    api_key_env: str,
    judge_api_key_env: str,
) -> tuple[Any, Any]:
    """The real planner and judge endpoints the options name (None: scripted)."""
    from evals.world import Endpoint

    for url in (endpoint, judge_endpoint):
        if url is not None and not url.startswith(("http://", "https://")):
            raise InputError(f"{url!r} is not an http(s) URL (the endpoint's /v1 base URL)")
    if endpoint is not None and not model_name:
        raise InputError("--endpoint needs --model (the model name the endpoint serves)")
    if model_name and endpoint is None:
        raise InputError("--model names the model of --endpoint; give --endpoint too")
    if judge_endpoint is not None and not (judge_model or model_name):
        raise InputError("--judge-endpoint needs --judge-model (or --model)")
    planner = None
    if endpoint is not None:
        assert model_name is not None
        planner = Endpoint(endpoint, model_name, os.environ.get(api_key_env) or "sk-none")
    judge = None
    if judge_endpoint is not None:
        name = judge_model or model_name
        assert name is not None
        judge = Endpoint(judge_endpoint, name, os.environ.get(judge_api_key_env) or "sk-none")
    elif planner is not None:
        judge = planner
    return planner, judge


def _html() -> Any:
    from evals import html

    return html


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("opsgate")
    except PackageNotFoundError:
        return "unknown"


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
    from evals.report import METRICS

    for label, key in METRICS:
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
