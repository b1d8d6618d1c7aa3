"""The isolated world one eval run works in, whatever the environment says: a temp home with
its own embedded SQLite database (migrated) and embedded redis-server, its own copy of
config/, a fresh sandbox every downstream base URL (and, for a model-planned set, the
OpenAI-compatible endpoint) points at, a real `opsgate worker` and, when the run delivers
webhooks, a real `opsgate api`. Nothing of the caller's database, Redis, downstream systems or
model endpoint is reachable from it, so it is safe to run anywhere."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from app.core.processes import free_port, spawn, stop_process, wait_http

# Variables of the caller's environment that must not reach the world (besides OPSGATE_*).
_FOREIGN = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT")
SYSTEMS = ("STRIPE", "ZENDESK", "SALESFORCE", "OKTA")


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint: its base URL, the model asked for, and its key."""

    url: str
    model: str
    api_key: str = "sk-opsgate-eval"  # local servers ignore it; the SDK insists on one


@dataclass(frozen=True)
class WorldSpec:
    """What a run needs of its world."""

    name: str
    config_dir: Path
    worker_threads: int
    # Plan with the scripted model server (the sandbox's /v1/chat/completions).
    model: bool = False
    # Workflows the router plans with the model even where the rules tier could.
    skip_rules: tuple[str, ...] = ()
    # The soft check's model judge: off, on for the model tiers' plans, or on for every plan.
    judge: Literal["off", "model-plans", "all-plans"] = "off"
    # A real OpenAI-compatible endpoint instead of the scripted one, and the model it serves
    # (every tier asks for it); the judge's own endpoint and model when they differ.
    endpoint: Endpoint | None = None
    judge_endpoint: Endpoint | None = None
    # Start `opsgate api` (webhook and jobs API intake).
    api: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """A running isolated world."""

    home: Path
    sandbox_url: str
    api_url: str | None = None
    # Keep the home (logs, databases) after the run, e.g. when it did not settle.
    keep: bool = False

    def applied_writes(self) -> list[dict[str, Any]]:
        """The sandbox's ledger of applied writes (idempotent replays excluded)."""
        resp = httpx.get(
            f"{self.sandbox_url}/_sandbox/ledger", params={"outcome": "applied"}, timeout=30
        )
        resp.raise_for_status()
        return list(resp.json()["writes"])


def eval_config(source: Path, target: Path, spec: WorldSpec) -> Path:
    """A copy of `source` with room in the budgets, the router's skip_rules and the judge."""
    shutil.copytree(source, target)
    path = target / "models.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("budgets", {})["daily_usd"] = {"default": 1000.0}
    data.setdefault("router", {})["skip_rules"] = list(spec.skip_rules)
    if spec.endpoint is not None:
        # Every tier asks the one model; its price is unknown here, so cost reads zero.
        for tier in data["tiers"].values():
            tier["models"] = [_priced(spec.endpoint.model)]
            tier["timeout_seconds"] = max(float(tier.get("timeout_seconds", 0)), 300.0)
    judge_tier = "small"
    if spec.judge_endpoint is not None:
        judge_tier = "judge"
        data["tiers"]["judge"] = {
            "base_url": spec.judge_endpoint.url,
            "api_key_env": "OPSGATE_EVAL_JUDGE_API_KEY",
            "timeout_seconds": 300,
            "max_output_tokens": 400,
            "models": [_priced(spec.judge_endpoint.model)],
        }
    if spec.judge == "off":
        data.pop("soft_check", None)
    else:
        data["soft_check"] = {
            "tier": judge_tier,
            "judge_rules_plans": spec.judge == "all-plans",
        }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return target


def _priced(model: str) -> dict[str, Any]:
    return {"name": model, "input_per_million": 0.0, "output_per_million": 0.0}


def _reset_process_state() -> None:
    from app.core.clients import reset_clients
    from app.core.db import dispose_engine
    from app.settings import get_settings

    get_settings.cache_clear()
    dispose_engine()
    reset_clients()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """This process's environment replaced by `values` (restored on exit)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    _reset_process_state()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _reset_process_state()


@contextlib.contextmanager
def isolated_world(spec: WorldSpec) -> Iterator[World]:
    """Start the world of `spec`; stop it (and remove its home unless kept) on exit."""
    from app.core import broker, db, redis_server
    from app.settings import get_settings

    home = Path(tempfile.mkdtemp(prefix=f"opsgate-eval-{spec.name}-"))
    var = home / "var"
    var.mkdir()
    port = free_port()
    world = World(home=home, sandbox_url=f"http://127.0.0.1:{port}")
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("OPSGATE_") and k not in _FOREIGN
    }
    env = {
        **base,
        "OPSGATE_ENV": "development",
        "OPSGATE_HOME": str(home),
        "OPSGATE_CONFIG_DIR": str(eval_config(spec.config_dir, home / "config", spec)),
        **{f"OPSGATE_{s}_API_BASE": world.sandbox_url for s in SYSTEMS},
        **spec.env,
    }
    if spec.endpoint is not None:
        env["OPENAI_BASE_URL"] = spec.endpoint.url
        env["OPENAI_API_KEY"] = spec.endpoint.api_key
    elif spec.model:
        env["OPENAI_BASE_URL"] = f"{world.sandbox_url}/v1"
        env["OPENAI_API_KEY"] = "sk-opsgate-eval"
    if spec.judge_endpoint is not None:
        env["OPSGATE_EVAL_JUDGE_API_KEY"] = spec.judge_endpoint.api_key
    procs: list[subprocess.Popen[bytes]] = []
    started_redis = False
    with _environment(env):
        settings = get_settings()
        try:
            db.upgrade()
            started_redis = broker.ensure_redis(settings)
            # The children find this world's database and Redis by URL, never on their own.
            os.environ["OPSGATE_DATABASE_URL"] = settings.resolved_database_url()
            os.environ["OPSGATE_REDIS_URL"] = broker.redis_url(settings)
            _reset_process_state()
            child_env = dict(os.environ)
            sandbox_db = var / "sandbox.db"
            log = var / "sandbox.log"
            procs.append(
                spawn(
                    ["sandbox", "--port", str(port), "--reset", "--db", str(sandbox_db)],
                    child_env,
                    log,
                )
            )
            wait_http(f"{world.sandbox_url}/_sandbox/health", procs[-1], "the sandbox", log)
            node = f"eval-{spec.name}-{secrets.token_hex(3)}@%h"
            procs.append(
                spawn(
                    [
                        "worker",
                        "--beat",
                        "--concurrency",
                        str(spec.worker_threads),
                        "--hostname",
                        node,
                    ],
                    child_env,
                    var / "worker.log",
                )
            )
            if spec.api:
                api_port = free_port()
                world.api_url = f"http://127.0.0.1:{api_port}"
                log = var / "api.log"
                procs.append(spawn(["api", "--port", str(api_port)], child_env, log))
                wait_http(f"{world.api_url}/healthz", procs[-1], "the API", log, timeout=60)
            yield world
        finally:
            for proc in reversed(procs):
                stop_process(proc)
            if started_redis:
                redis_server.stop(settings)
            _reset_process_state()
            if not world.keep:
                shutil.rmtree(home, ignore_errors=True)
