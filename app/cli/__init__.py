"""The `opsgate` command line."""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import ValidationError

from app.errors import InputError, OpsgateError, PermanentError, ServiceUnavailable


class OpsgateGroup(click.Group):
    """A click group that turns opsgate's errors into one clear line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except ServiceUnavailable as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(3)
        except (PermanentError, OpsgateError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except ValidationError as exc:
            # Settings are validated on first use; a bad environment is one line, not a trace.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            click.echo(f"error: invalid configuration: {problems}", err=True)
            sys.exit(2)


@click.group(cls=OpsgateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opsgate")
def cli() -> None:
    """opsgate: an LLM agent doing ops work through plan -> verify -> act -> verify."""


def _register() -> None:
    from app.cli import audit, demo, jobs, keys, killswitch, report, services

    services.register(cli)
    keys.register(cli)
    jobs.register(cli)
    report.register(cli)
    demo.register(cli)
    killswitch.register(cli)
    audit.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="opsgate")
