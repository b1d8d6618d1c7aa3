"""The `opsgate` command line."""

from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from app.errors import (
    InputError,
    OpsgateError,
    PermanentError,
    ServiceUnavailable,
    one_line,
)

# Commands that read their settings themselves (doctor reports a bad one as a finding;
# eval builds an isolated world whatever the environment says).
_OWN_SETTINGS = frozenset({"doctor", "eval"})


# Command name -> "module:attribute". A command's module is imported only when that command
# runs (click's documented lazy-loading pattern): `opsgate worker` must not load the API
# stack (fastapi, starlette, the console) nor the other commands' modules, which every
# worker process would otherwise keep resident for nothing
# (tests/integration/test_worker_imports.py).
COMMANDS = {
    "api": "app.cli.services:api",
    "worker": "app.cli.services:worker",
    "beat": "app.cli.services:beat",
    "sandbox": "app.cli.services:sandbox",
    "db": "app.cli.services:db_group",
    "keys": "app.cli.keys:keys_group",
    "submit": "app.cli.jobs:submit",
    "jobs": "app.cli.jobs:jobs_group",
    "escalations": "app.cli.jobs:escalations_group",
    "approve": "app.cli.jobs:approve",
    "reject": "app.cli.jobs:reject",
    "report": "app.cli.report:report",
    "demo": "app.cli.demo:demo_command",
    "killswitch": "app.cli.killswitch:killswitch_group",
    "audit": "app.cli.audit:audit_group",
    "data": "app.cli.audit:data_group",
    "doctor": "app.cli.doctor:doctor",
    "eval": "app.cli.eval:eval_command",
    "model": "app.cli.model:model_group",
}


class OpsgateGroup(click.Group):
    """A click group that loads a command's module only when that command is asked for,
    validates the settings before any command runs and turns opsgate's errors, and a
    database or Redis that is missing, unmigrated or unreachable, into one clear line and
    an exit code (never a traceback)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["opsgate.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        argv: list[str] = ctx.meta.get("opsgate.argv", [])
        try:
            if argv and argv[0] not in _OWN_SETTINGS and not {"-h", "--help"} & set(argv):
                from app.settings import get_settings

                get_settings()
            return super().invoke(ctx)
        except InputError as exc:
            _fail(f"error: {exc}", 2)
        except ServiceUnavailable as exc:
            _fail(f"error: {exc}", 3)
        except (PermanentError, OpsgateError) as exc:
            _fail(f"error: {exc}", 1)
        except ValidationError as exc:
            if exc.title == "Settings":
                _fail(settings_error_line(exc), 2)
            _fail(f"error: invalid input: {_problems(exc)}", 2)
        except Exception as exc:
            line = _service_error_line(exc)
            if line is None:
                raise
            _fail(f"error: {line}", 3)


def _fail(line: str, code: int) -> NoReturn:
    click.echo(line, err=True)
    sys.exit(code)


def _problems(exc: ValidationError) -> str:
    return one_line(exc, "input")


def settings_error_line(exc: ValidationError) -> str:
    """`opsgate: invalid setting NAME: what is wrong (fix: ...)`, one line for all problems."""
    parts = []
    for e in exc.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        name = ".".join(str(p) for p in e["loc"])
        if not name:
            fix = "set real values, or OPSGATE_ENV=development on a development machine"
            parts.append(f"invalid settings: {msg} (fix: {fix})")
            continue
        if "(fix:" not in msg:
            msg += f" (fix: correct {name} in the environment or .env)"
        parts.append(f"invalid setting {name}: {msg}")
    return "opsgate: " + "; ".join(parts)


def _service_error_line(exc: Exception) -> str | None:
    """The one line for a database or Redis failure a command met mid-way, if it is one."""
    import redis
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        from app.core import db

        return db.explain_error(exc)
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        from app.core import broker

        return f"redis unreachable at {broker.describe_url()}: {exc}"
    return None


@click.group(cls=OpsgateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opsgate")
def cli() -> None:
    """opsgate: an LLM agent doing ops work through plan -> verify -> act -> verify."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="opsgate")
