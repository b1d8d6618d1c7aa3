"""Long-running services: api, worker, beat, sandbox; and `db upgrade`."""

from __future__ import annotations

import atexit
import os
import sys
import time
from typing import Any

import click
from celery import signals
from celery.platforms import EX_FAILURE

from app.cli.common import prepare_services, setup_logging
from app.jobs.lifecycle import QUEUES


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
def api(host: str, port: int) -> None:
    """Run the HTTP API (intake, jobs, metrics, health)."""
    import uvicorn

    setup_logging("INFO")
    prepare_services()
    uvicorn.run(
        "app.api.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )


@click.command()
@click.option(
    "--queues",
    "-Q",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues to consume.",
)
@click.option(
    "--concurrency",
    "-c",
    default=8,
    show_default=True,
    type=int,
    help="Worker threads (or processes with --pool prefork).",
)
@click.option(
    "--pool",
    default="threads",
    show_default=True,
    type=click.Choice(["threads", "prefork", "solo"]),
    help="Execution pool; stages are I/O-bound, so threads by default.",
)
@click.option("--beat", "with_beat", is_flag=True, help="Also run the periodic reaper in-process.")
@click.option("--hostname", "-n", default=None, help="Worker node name (default: celery's).")
def worker(queues: str, concurrency: int, pool: str, with_beat: bool, hostname: str | None) -> None:
    """Run a Celery worker for the pipeline's queues.

    If Celery stops on an "Unrecoverable error" (not a requested shutdown), the process
    starts itself again after a backoff, so one broker hiccup does not take a worker out
    of the fleet until someone notices.
    """
    setup_logging("INFO")
    owns_redis = prepare_services() or os.environ.get(_OWNS_REDIS) == "1"
    if os.environ.get(_OWNS_REDIS) == "1":
        # A re-executed worker stops the embedded server its first life started.
        from app.core import redis_server
        from app.settings import get_settings

        atexit.register(redis_server.stop, get_settings())
    from app.celery_app import celery_app

    unknown = set(queues.split(",")) - set(QUEUES)
    if unknown:
        raise click.BadParameter(
            f"unknown queue(s) {', '.join(sorted(unknown))}; known: {', '.join(QUEUES)}",
            param_hint="--queues",
        )
    if pool != "prefork":
        # Only the prefork pool can cancel a running task; with threads Celery cannot
        # (no kill_job) and its reconnect path then crashes the worker (celery#9250).
        # Re-running a task is safe here anyway: step claims and idempotency keys.
        celery_app.conf.worker_cancel_long_running_tasks_on_connection_loss = False
    argv = [
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-P",
        pool,
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
    ]
    if with_beat:
        argv += ["-B", "-s", str(_beat_schedule_path())]
    if hostname:
        argv += ["-n", hostname]
    started = time.monotonic()
    # Celery's app.start and worker_main both drop the worker's exit code; read it off
    # the WorkController itself.
    lives: list[Any] = []
    signals.worker_init.connect(lambda sender, **_: lives.append(sender), weak=False)
    _run_celery_worker(celery_app, argv)
    code = lives[-1].exitcode if lives else None
    if code == EX_FAILURE:
        _restart_after_failure(time.monotonic() - started, owns_redis)
    sys.exit(code or 0)


def _run_celery_worker(app: Any, argv: list[str]) -> None:
    """Run Celery's own `worker` command (its options, their parsing and defaults) for `app`.

    Not through `app.start(["worker", ...])`: that loads the whole `celery` command group, with
    every installed plugin (Flower, with tornado) and the interactive shell (prompt_toolkit,
    pygments), ~11 MB a worker process would keep resident for nothing. The group's only work
    for a worker, given an app object, is this context object.
    """
    from celery.bin.base import CLIContext
    from celery.bin.worker import worker as celery_worker

    obj = CLIContext(app=app, no_color=None, workdir=None, quiet=False)
    celery_worker.main(args=argv, prog_name="opsgate worker", obj=obj, standalone_mode=False)


# Celery ends the worker process on an "Unrecoverable error" from its consumer; one such is
# a race in kombu's Redis channel close while the broker restarts (the transport is
# collected, then the channel closed again: AttributeError on `conninfo.hostname`), seen
# under load in the chaos suite. Celery has no option to restart the consumer in that
# case, and a container restart policy is not there for a bare `opsgate worker`, so the
# worker re-executes itself: same pid, same node name, a fresh interpreter. Unacked
# messages come back through the visibility timeout and stalled jobs through the reaper.
_RESTARTS = "OPSGATE_WORKER_RESTARTS"
_OWNS_REDIS = "OPSGATE_WORKER_OWNS_REDIS"
_MAX_QUICK_RESTARTS = 10
_HEALTHY_RUN_SECONDS = 60.0


def _restart_after_failure(ran_for: float, owns_redis: bool) -> None:
    """Re-exec this worker after a backoff, unless it keeps failing right after start."""
    import structlog

    restarts = 0 if ran_for >= _HEALTHY_RUN_SECONDS else int(os.environ.get(_RESTARTS, "0"))
    log = structlog.get_logger("opsgate.worker")
    if restarts >= _MAX_QUICK_RESTARTS:
        log.critical("worker.giving_up", restarts=restarts)
        return
    delay = min(30.0, 0.5 * 2**restarts)
    log.error("worker.restarting", after_seconds=delay, restarts=restarts + 1)
    time.sleep(delay)
    os.environ[_RESTARTS] = str(restarts + 1)
    os.environ[_OWNS_REDIS] = "1" if owns_redis else "0"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


def _beat_schedule_path() -> object:
    from app.settings import get_settings

    path = get_settings().var_dir
    path.mkdir(parents=True, exist_ok=True)
    return path / "celerybeat-schedule"


@click.command()
def beat() -> None:
    """Run the scheduler (outbox relay and stale-job reaper)."""
    setup_logging("INFO")
    prepare_services()
    from app.celery_app import celery_app

    celery_app.start(["beat", "--loglevel", "INFO", "-s", str(_beat_schedule_path())])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--db",
    "db_path",
    default=None,
    help="SQLite file for the sandbox's state (default: ./var/sandbox.db).",
)
@click.option("--reset", is_flag=True, help="Wipe and reseed the sandbox's state at start.")
def sandbox(host: str, port: int, db_path: str | None, reset: bool) -> None:
    """Run the local sandbox that emulates Stripe, Zendesk, Salesforce and Okta."""
    from app.settings import get_settings
    from tools.sandbox import server

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    path = db_path or str(settings.var_dir / "sandbox.db")
    if reset:
        from tools.sandbox import seed, store

        seed.reset(store.Store(path))
    click.echo(f"sandbox listening on http://{host}:{port} (state in {path})", err=True)
    server.run(host, port, path)


@click.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from app.core import db

    setup_logging()
    db.upgrade()
    click.echo("database schema is up to date")
