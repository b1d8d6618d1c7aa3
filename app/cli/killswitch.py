"""`opsgate killswitch on|off|status`: stop the fleet's tool calls in a second, and resume."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from app.cli.common import emit_json, prepare_services, through_api
from app.core.db import session_scope
from app.settings import cli_actor

_scope_options = [
    click.option("--workflow", default=None, help="Only this workflow's tool calls."),
    click.option("--tool", default=None, help="Only this tool's calls (e.g. stripe.refund)."),
]


def _scoped(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_scope_options):
        fn = option(fn)
    return fn


@click.group("killswitch")
def killswitch_group() -> None:
    """Engage, release or show the kill switch (global, per workflow or per tool)."""


def _change(engaged: bool, workflow: str | None, tool: str | None, reason: str) -> None:
    from app.api.killswitch import apply_change
    from app.controls.killswitch import SwitchChange

    body = SwitchChange(engaged=engaged, workflow=workflow, tool=tool, reason=reason)
    result = through_api("/v1/killswitch", body.model_dump())
    if result is None:
        prepare_services()
        with session_scope() as session:
            result = apply_change(session, body, cli_actor())
    state = "ENGAGED" if result["engaged"] else "released"
    extra = f"; {result['resumed']} parked job(s) resumed" if not result["engaged"] else ""
    click.echo(f"kill switch {result['scope']} {state}{extra}")


@killswitch_group.command("on")
@_scoped
@click.option("--reason", required=True, help="Why the fleet is stopped (recorded).")
def on(workflow: str | None, tool: str | None, reason: str) -> None:
    """Engage a switch: matching tool calls stop before they go out; jobs park."""
    _change(True, workflow, tool, reason)


@killswitch_group.command("off")
@_scoped
@click.option("--reason", default="released", show_default=True, help="Recorded with it.")
def off(workflow: str | None, tool: str | None, reason: str) -> None:
    """Release a runtime switch; the jobs it parked go back to work."""
    _change(False, workflow, tool, reason)


@killswitch_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """Show every engaged switch, from config/killswitch.yaml and at runtime."""
    from app.controls import killswitch

    prepare_services()
    rows = killswitch.status()
    if as_json:
        emit_json({"engaged": rows})
        return
    if not rows:
        click.echo("no kill switch engaged")
        return
    table = Table("scope", "source", "by", "at", "reason")
    for r in rows:
        table.add_row(
            r["scope"], r["source"], r.get("by", ""), r.get("at", ""), r.get("reason", "")
        )
    Console().print(table)
