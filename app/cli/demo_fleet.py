"""The main job on one machine: sandbox, worker and broker in the background, the sample inbox
through the pipeline, and a table of outcomes (while the fleet still runs, if the caller wants
to keep it)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlalchemy import select

from app.core import broker, db
from app.core.db import session_scope
from app.core.processes import free_port, spawn, stop_process, wait_http
from app.errors import NotInstalled, ServiceUnavailable
from app.intake import submissions as intake
from app.jobs import lifecycle
from app.jobs.views import latest_escalation
from app.llm import local
from app.models import Job
from app.settings import PROJECT_ROOT, Settings, cli_actor

SETTLED = lifecycle.TERMINAL | {lifecycle.ESCALATED, lifecycle.PAUSED}


@dataclass
class Row:
    """One submission of the inbox and what became of it."""

    file: str
    external_id: str
    job_id: str
    duplicate: bool
    workflow: str = ""
    status: str = "queued"
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ModelChoice:
    """What plans the jobs the rules tier cannot: `env`, the endpoint OPENAI_BASE_URL /
    OPENAI_API_KEY configure (none: those jobs escalate as no_model), or `local`, the local
    model, served by the demo itself (`opsgate model serve`) or reached at `endpoint`."""

    kind: Literal["env", "local"] = "env"
    endpoint: str | None = None
    gguf: Path | None = None
    threads: int | None = None

    def check(self, settings: Settings) -> None:
        """Refuse in one line, before anything starts, what would fail later."""
        if self.kind != "local" or self.endpoint:
            return
        local.server_binary()
        gguf = self.gguf or local.weights_path(settings)
        if not gguf.is_file():
            raise NotInstalled(
                f"no GGUF file at {gguf} (fix: opsgate model install-weights, after "
                f"{local.WEIGHTS_HINT}; or --gguf PATH, or --endpoint URL of a running server)"
            )


@dataclass
class DemoResult:
    """The demo's outcome table plus the sandbox's count of applied writes."""

    run_id: str
    rows: list[Row] = field(default_factory=list)
    applied_writes: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False
    # Which model planned what the rules tier could not, and how long a local one took to load.
    model: str = "none (rules tier only)"
    model_ready_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {
            "run_id": self.run_id,
            "model": self.model,
            "model_ready_seconds": self.model_ready_seconds,
            "timed_out": self.timed_out,
            "applied_writes": self.applied_writes,
            "rows": [r.__dict__ for r in self.rows],
        }


def load_inbox(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """The sample submissions, in file-name order."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ServiceUnavailable(f"no sample submissions in {folder}")
    return [(f.name, json.loads(f.read_text())) for f in files]


@contextlib.contextmanager
def local_model(
    settings: Settings, run_id: str, choice: ModelChoice, env: dict[str, str], result: DemoResult
) -> Iterator[dict[str, str]]:
    """The local model for this run: its server started (or the given endpoint checked) and a
    copy of config/ whose tiers name it; yields the variables that point the worker at both."""
    var = settings.var_dir
    config = var / f"demo-config-{run_id}"
    try:
        if choice.endpoint:
            endpoint = choice.endpoint.rstrip("/")
            try:
                name = local.first_model(endpoint)
            except (httpx.HTTPError, ValueError) as exc:
                raise ServiceUnavailable(
                    f"no OpenAI-compatible endpoint answers at {endpoint}/models: {exc}"
                ) from exc
            local.local_config(settings.config_dir, config, model=name)
            result.model = f"{name} at {endpoint}"
            yield {"OPENAI_BASE_URL": endpoint, "OPSGATE_CONFIG_DIR": str(config)}
            return
        gguf = choice.gguf or local.weights_path(settings)
        opts = local.ServerOptions(gguf.resolve(), port=free_port(), threads=choice.threads)
        log = var / "demo-model.log"
        with local.serving([sys.executable, "-m", "app"], opts, log, env) as seconds:
            local.local_config(settings.config_dir, config)
            result.model = f"{local.MODEL_NAME} (local llama-server at {opts.base_url})"
            result.model_ready_seconds = round(seconds, 1)
            yield {"OPENAI_BASE_URL": opts.base_url, "OPSGATE_CONFIG_DIR": str(config)}
    finally:
        shutil.rmtree(config, ignore_errors=True)


@dataclass(frozen=True)
class Fleet:
    """What `background` runs: the sandbox's URL, and the environment its children share (the
    database, Redis, downstream bases pointing at the sandbox), for more children to join."""

    sandbox_url: str
    env: dict[str, str]


@contextlib.contextmanager
def background(
    settings: Settings,
    run_id: str,
    model: ModelChoice | None = None,
    result: DemoResult | None = None,
) -> Iterator[Fleet]:
    """Embedded or configured Redis, a fresh sandbox, the chosen model and a worker; yields
    them as a `Fleet`, stopped again on exit."""
    var = settings.var_dir
    var.mkdir(parents=True, exist_ok=True)
    started_redis = broker.ensure_redis(settings)
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = dict(
        os.environ,
        OPSGATE_HOME=str(settings.home.resolve()),
        OPSGATE_DATABASE_URL=settings.database_url or settings.resolved_database_url(),
        OPSGATE_REDIS_URL=broker.redis_url(settings),
        OPSGATE_STRIPE_API_BASE=sandbox_url,
        OPSGATE_ZENDESK_API_BASE=sandbox_url,
        OPSGATE_SALESFORCE_API_BASE=sandbox_url,
        OPSGATE_OKTA_API_BASE=sandbox_url,
        OPSGATE_AGENT_IDENTITY=f"opsgate-demo/{run_id}",
    )
    sandbox_log, worker_log = var / "demo-sandbox.log", var / "demo-worker.log"
    procs: list[subprocess.Popen[bytes]] = []
    stack = contextlib.ExitStack()
    try:
        if model is not None and model.kind == "local":
            # The local model's key is none: a key set for another vendor stays out of it.
            env.pop("OPENAI_API_KEY", None)
            env.update(
                stack.enter_context(
                    local_model(settings, run_id, model, env, result or DemoResult(run_id))
                )
            )
        sandbox = spawn(
            [
                "sandbox",
                "--port",
                str(sandbox_port),
                "--reset",
                "--db",
                str(var / f"demo-sandbox-{run_id}.db"),
            ],
            env,
            sandbox_log,
        )
        procs.append(sandbox)
        wait_http(f"{sandbox_url}/_sandbox/health", sandbox, "the sandbox", sandbox_log)
        worker = spawn(
            ["worker", "--beat", "--concurrency", "4", "--hostname", f"demo-{run_id}@%h"],
            env,
            worker_log,
        )
        procs.append(worker)
        yield Fleet(sandbox_url, env)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        stack.close()
        with contextlib.suppress(FileNotFoundError):
            (var / f"demo-sandbox-{run_id}.db").unlink()
        if started_redis:
            from app.core import redis_server

            redis_server.stop(settings)


def submit_inbox(inbox: list[tuple[str, dict[str, Any]]], run_id: str) -> list[Row]:
    """Submit every sample under this run's delivery and external ids: each run works on a
    fresh sandbox, so it is new work whose history holds none of an earlier run's jobs."""
    rows = []
    actor = cli_actor()
    for name, raw in inbox:
        external = str(raw["external_id"])
        raw = dict(
            raw,
            external_id=f"demo-{run_id}:{external}",
            delivery_id=f"{run_id}:{raw.get('delivery_id') or external}",
        )
        job_id, created = intake.submit(raw, submitted_by=actor)
        rows.append(Row(name, external, job_id, duplicate=not created))
    return rows


def poll(rows: list[Row]) -> int:
    """Refresh each row's status; returns how many jobs have settled."""
    with session_scope() as session:
        found = {
            j.id: j
            for j in session.scalars(select(Job).where(Job.id.in_({r.job_id for r in rows})))
        }
        for row in rows:
            job = found[row.job_id]
            row.status = job.status
            esc = latest_escalation(session, job.id) if job.status == lifecycle.ESCALATED else None
            row.reason = esc.reason if esc else ""
            row.workflow = job.workflow
            # A completed job says what it did (its plan); an escalated one, why it stopped.
            done = job.plan_summary if job.status == lifecycle.COMPLETED else None
            row.detail = esc.detail if esc else (done or job.status_reason or "")
    return sum(1 for job_id in {r.job_id for r in rows} if found[job_id].status in SETTLED)


@contextlib.contextmanager
def running(
    settings: Settings,
    *,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
    model: ModelChoice | None = None,
) -> Iterator[tuple[DemoResult, Fleet]]:
    """Run the demo end to end; yields its outcome table with the fleet still running (for
    `opsgate demo --ui`), and stops the fleet on exit."""
    model = model or ModelChoice()
    model.check(settings)
    run_id = uuid.uuid4().hex[:8]
    # The demo is for a development machine: it migrates whatever database it is pointed at
    # (the embedded SQLite, or an empty PostgreSQL) as `opsgate db upgrade` would.
    db.upgrade()
    result = DemoResult(run_id)
    if model.kind == "env" and settings.model_configured:
        result.model = f"the configured endpoint ({settings.openai_base_url or 'OpenAI'})"
    inbox = load_inbox(PROJECT_ROOT / "examples" / "inbox")
    with background(settings, run_id, model, result) as fleet:
        result.rows = submit_inbox(inbox, run_id)
        total = len({r.job_id for r in result.rows})
        deadline = time.monotonic() + timeout
        while True:
            settled = poll(result.rows)
            if progress:
                progress(settled, total)
            if settled >= total:
                break
            if time.monotonic() > deadline:
                result.timed_out = True
                break
            time.sleep(0.25)
        ledger = httpx.get(
            f"{fleet.sandbox_url}/_sandbox/ledger", params={"outcome": "applied"}, timeout=10
        ).json()["writes"]
        for write in ledger:
            result.applied_writes[write["system"]] = (
                result.applied_writes.get(write["system"], 0) + 1
            )
        yield result, fleet
