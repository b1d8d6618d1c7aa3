"""`opsgate demo`: the main job on embedded defaults."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli import demo_console, demo_fleet
from app.cli.common import emit_json, setup_logging
from app.errors import InputError
from app.settings import Settings, get_settings


@click.command("demo")
@click.option(
    "--timeout",
    default=None,
    type=float,
    help="Seconds to wait for every job to settle (default: 180; 900 with --model local).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome table as JSON.")
@click.option(
    "--model",
    "model_kind",
    type=click.Choice(["env", "local"]),
    default="env",
    show_default=True,
    help="What plans the jobs the rules tier cannot: env = the endpoint OPENAI_BASE_URL / "
    "OPENAI_API_KEY configure (none set: they escalate as no_model); local = the local model "
    "(docs/local-model.md), started here unless --endpoint is given.",
)
@click.option(
    "--endpoint",
    default=None,
    metavar="URL",
    help="With --model local: a running server's base URL (e.g. http://127.0.0.1:8080/v1) "
    "instead of starting one.",
)
@click.option(
    "--gguf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --model local: the GGUF file to serve (default: the installed weights).",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(1),
    help="With --model local: CPU threads for the model server (default: every core).",
)
@click.option(
    "--ui",
    is_flag=True,
    help="After the table, keep the worker and the sandbox running, start the API with the "
    "reviewer console (/ui) and print its URL and a reviewer key for this run; Ctrl-C stops "
    "them all and revokes the run's keys.",
)
@click.option(
    "--host",
    default=None,
    metavar="HOST",
    help="With --ui: the interface the API binds (default: 127.0.0.1).",
)
@click.option(
    "--port",
    default=None,
    type=click.IntRange(1, 65535),
    help="With --ui: the port the API binds (default: a free one).",
)
def demo_command(
    timeout: float | None,
    as_json: bool,
    model_kind: str,
    endpoint: str | None,
    gguf: Path | None,
    threads: int | None,
    ui: bool,
    host: str | None,
    port: int | None,
) -> None:
    """Process the sample inbox in examples/ end to end and print the outcomes; with --ui,
    then serve the reviewer console on the running fleet until Ctrl-C."""
    setup_logging()
    settings = get_settings()
    if not ui and (host or port):
        raise InputError("--host and --port go with --ui")
    model = _model_choice(settings, model_kind, endpoint, gguf, threads)
    timeout = timeout if timeout is not None else (900.0 if model_kind == "local" else 180.0)
    if settings.environment == "production":
        raise InputError(
            "opsgate demo is for a development machine: it migrates the database, starts a "
            "sandbox and submits sample jobs (fix: run it without OPSGATE_ENV=production)"
        )
    with contextlib.ExitStack() as stack:
        signals = stack.enter_context(demo_console.StopSignals()) if ui else None
        result, fleet = _process(stack, settings, model, timeout, as_json)
        if signals is None or result.timed_out:
            stack.close()  # everything stops before the table shows
            _report(result, as_json, timeout, settings.var_dir)
            return
        if not as_json:
            _print(result)
            click.echo("starting the API with the reviewer console ...", err=True)
        served = stack.enter_context(
            demo_console.serving(settings, fleet, result.run_id, host or "127.0.0.1", port)
        )
        if as_json:
            emit_json({**result.as_json(), "ui": served.as_json()})
        else:
            _print_console(served)
        signals.wait(served)
        if not as_json:
            click.echo("stopping the API, the worker and the sandbox ...", err=True)


def _model_choice(
    settings: Settings,
    model_kind: str,
    endpoint: str | None,
    gguf: Path | None,
    threads: int | None,
) -> demo_fleet.ModelChoice:
    """What plans the jobs the rules tier cannot, refused in one line if it cannot work."""
    if model_kind != "local" and (endpoint or gguf or threads):
        raise InputError("--endpoint, --gguf and --threads go with --model local")
    if endpoint:
        from app.settings import check_http_url

        try:
            check_http_url(endpoint)
        except ValueError as exc:
            raise InputError(f"--endpoint: {exc}") from exc
    model = demo_fleet.ModelChoice(
        "local" if model_kind == "local" else "env", endpoint, gguf, threads
    )
    model.check(settings)
    return model


def _process(
    stack: contextlib.ExitStack,
    settings: Settings,
    model: demo_fleet.ModelChoice,
    timeout: float,
    as_json: bool,
) -> tuple[demo_fleet.DemoResult, demo_fleet.Fleet]:
    """The sample inbox through the fleet, with progress on stderr; the fleet keeps running
    until `stack` closes."""
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json or not console.is_terminal,
    ) as bar:
        task = bar.add_task("processing the sample inbox", total=None)
        last = [-1]

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if not console.is_terminal and not as_json and done != last[0]:
                console.print(f"settled {done}/{total} jobs")
                last[0] = done

        if not as_json:
            starting = "redis, the sandbox and a worker"
            if model.kind == "local" and not model.endpoint:
                starting = "the local model server (loading takes a while), " + starting
            console.print(f"starting {starting} ...")
        return stack.enter_context(
            demo_fleet.running(settings, timeout=timeout, progress=progress, model=model)
        )


def _report(result: demo_fleet.DemoResult, as_json: bool, timeout: float, var: Path) -> None:
    """The outcome table; exit 1 if not every job settled in time."""
    if as_json:
        emit_json(result.as_json())
    else:
        _print(result)
    if result.timed_out:
        click.echo(
            f"error: not every job settled within {timeout:.0f}s; see {var}/demo-worker.log",
            err=True,
        )
        sys.exit(1)


def _print(result: demo_fleet.DemoResult) -> None:
    table = Table(
        "submission",
        "workflow",
        "subject",
        "job",
        "outcome",
        "reason",
        "detail",
        title=f"opsgate demo (run {result.run_id})",
    )
    for r in result.rows:
        outcome = "duplicate delivery" if r.duplicate else r.status
        reason = f"same job as {r.job_id[:8]}" if r.duplicate else r.reason
        table.add_row(
            r.file,
            r.workflow,
            r.external_id,
            r.job_id[:8],
            outcome,
            reason,
            "" if r.duplicate else r.detail,
        )
    console = Console(width=max(Console().width, 160))
    console.print(table)
    ready = f", ready after {result.model_ready_seconds}s" if result.model_ready_seconds else ""
    console.print(f"model for what the rules tier cannot plan: {result.model}{ready}")
    writes = ", ".join(f"{n} {s}" for s, n in sorted(result.applied_writes.items())) or "none"
    console.print(f"writes applied in the sandbox: {writes}")


def _print_console(served: demo_console.ReviewerConsole) -> None:
    click.echo("")
    click.echo(f"reviewer console: {served.url}")
    click.echo(f"sign in:          {served.sign_in_url}")
    click.echo(f"reviewer key:     {served.reviewer_key}")
    click.echo(f"admin key:        {served.admin_key} (for the operator actions)")
    click.echo(demo_console.HINT)
