"""`opsgate demo`: the main job on embedded defaults."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app import demo
from app.cli.common import emit_json, setup_logging
from app.errors import InputError
from app.settings import get_settings


@click.command("demo")
@click.option(
    "--timeout",
    default=180.0,
    show_default=True,
    type=float,
    help="Seconds to wait for every job to settle.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome table as JSON.")
def demo_command(timeout: float, as_json: bool) -> None:
    """Process the sample inbox in examples/ end to end and print the outcomes."""
    setup_logging()
    settings = get_settings()
    if settings.environment == "production":
        raise InputError(
            "opsgate demo is for a development machine: it migrates the database, starts a "
            "sandbox and submits sample jobs (fix: run it without OPSGATE_ENV=production)"
        )
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

        console.print("starting redis, the sandbox and a worker ...") if not as_json else None
        result = demo.run(settings, timeout=timeout, progress=progress)
    if as_json:
        emit_json(result.as_json())
    else:
        _print(result)
    if result.timed_out:
        click.echo(
            f"error: not every job settled within {timeout:.0f}s; see "
            f"{settings.var_dir}/demo-worker.log",
            err=True,
        )
        sys.exit(1)


def _print(result: demo.DemoResult) -> None:
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
    writes = ", ".join(f"{n} {s}" for s, n in sorted(result.applied_writes.items())) or "none"
    console.print(f"writes applied in the sandbox: {writes}")


def register(cli: click.Group) -> None:
    """Add the command to the CLI."""
    cli.add_command(demo_command)
