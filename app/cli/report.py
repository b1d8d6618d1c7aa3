"""`opsgate report`: the KPIs per workflow, as a terminal table, JSON or an HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from app.cli.common import emit_json, prepare_database, setup_logging
from app.core.db import session_scope
from app.core.timespec import parse_since
from app.errors import InputError


@click.command("report")
@click.option(
    "--since",
    metavar="WHEN",
    help="Only jobs created since WHEN: a date (2024-05-01, midnight UTC), a datetime "
    "(2024-05-01T09:30:00Z; no offset means UTC) or an age (90m, 24h, 7d, 2w). "
    "Default: all time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Also write the report to FILE: one self-contained HTML page with charts "
    "(no scripts, works offline).",
)
def report(since: str | None, as_json: bool, html_file: Path | None) -> None:
    """KPIs per workflow, for budget and promotion decisions.

    Over the jobs created in the window: cost per completed task and model spend,
    escalation rate and reasons, tool-call success rate, retries per run, schema
    adherence of model output, time to done (p50, p95), shadow-mode agreement and job
    counts by status; with each workflow's rollout stage and the shadow proposals per
    tool. A rate with nothing to divide by is shown as "—" (null in JSON).
    """
    from app.reporting import html as report_html
    from app.reporting import kpis as kpi

    start = parse_since(since) if since else None
    setup_logging()
    prepare_database()
    with session_scope() as session:
        data = kpi.build(session, start)
    if html_file is not None:
        try:
            html_file.write_text(report_html.render(data), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {html_file}: {exc.strerror}") from exc
    if as_json:
        emit_json(data)
        return
    console = Console()
    if not console.is_terminal:
        # A file or a pipe has no width to fit: keep each row on one line.
        console.width = max(console.width, 140)
    print_report(data, console)
    if html_file is not None:
        click.echo(f"HTML report written to {html_file}")


def print_report(data: dict[str, Any], console: Console) -> None:
    """The KPI table, the escalation reasons and the shadow proposals per tool."""
    from app.reporting import kpis as kpi

    columns, rows = kpi.kpi_rows(data)
    head, cells = ["KPI", *columns], [[label, *values] for label, values in rows]
    console.print(_table(f"opsgate KPIs: {kpi.window_text(data)}", head, cells))
    if not data["total"]["jobs"]["total"]:
        console.print("no jobs created in the window")
    if data["escalation_reasons"]:
        console.print(_table("Escalations by reason", *kpi.reason_rows(data)))
    else:
        console.print("no escalations (shadow proposals aside) in the window")
    if data["shadow"]:
        console.print(_table("Shadow-mode agreement per tool", *kpi.shadow_rows(data), text=2))
    else:
        console.print("no shadow-mode proposals in the window")


def _table(title: str, head: list[str], rows: list[list[str]], text: int = 1) -> Table:
    """A table whose first `text` columns are names and the rest numbers."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(head):
        table.add_column(name, justify="left" if i < text else "right")
    for row in rows:
        table.add_row(*row)
    return table
