"""`opsgate keys`: the API key store (only hashes are kept)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from app.cli.common import emit_json, prepare_database, setup_logging
from app.core.db import session_scope
from app.errors import InputError
from app.identity import apikeys
from app.settings import ROLES, cli_actor
from app.workflows import registry


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys for calling systems."""


@keys_group.command("create")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES),
    help="requester: submit jobs; reviewer: work the human queue; admin: both.",
)
@click.option(
    "--workflow",
    "workflows",
    multiple=True,
    metavar="W",
    help="Scope the key to this workflow (repeat for more); without it: every workflow.",
)
def keys_create(name: str, role: str, workflows: tuple[str, ...]) -> None:
    """Create a key for NAME and print it once (it cannot be shown again)."""
    setup_logging()
    scope = _known_workflows(workflows) if workflows else None
    prepare_database()
    with session_scope() as session:
        key = apikeys.create(session, name, role, created_by=cli_actor(), workflows=scope)
        session.commit()
    click.echo(key)
    click.echo(
        f"created key {name!r} ({role}, {apikeys.describe_scope(scope)}); "
        "store it now, it is not kept",
        err=True,
    )


def _known_workflows(names: tuple[str, ...]) -> list[str]:
    """The names, if each is a registered workflow; else a one-line error naming the known."""
    known = registry.workflows()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"unknown workflow {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        )
    return sorted(set(names))


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """List stored keys (names, roles, workflow scopes, prefixes; never the keys)."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        rows = apikeys.listing(session)
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "role", "workflows", "prefix", "created by", "created", "revoked")
    for r in rows:
        table.add_row(
            r["name"],
            r["role"],
            apikeys.describe_scope(r["workflows"]),
            *(str(r[k] or "") for k in ("prefix", "created_by", "created_at", "revoked_at")),
        )
    Console().print(table)


@keys_group.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke the key named NAME; requests with it are refused from now on."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        apikeys.revoke(session, name)
        session.commit()
    click.echo(f"revoked key {name!r}")
