"""The `opsgate` command line."""

from __future__ import annotations

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


class OpsgateGroup(click.Group):
    """A click group that validates the settings before any command runs and turns
    opsgate's errors, and a database or Redis that is missing, unmigrated or unreachable,
    into one clear line and an exit code (never a traceback)."""

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


def _register() -> None:
    from app.cli import (
        audit,
        demo,
        doctor,
        eval,
        jobs,
        keys,
        killswitch,
        model,
        report,
        services,
    )

    services.register(cli)
    keys.register(cli)
    jobs.register(cli)
    report.register(cli)
    demo.register(cli)
    killswitch.register(cli)
    audit.register(cli)
    doctor.register(cli)
    eval.register(cli)
    model.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="opsgate")
