"""A worker process imports only what it uses (issue 20: worker RSS).

A real worker is started through the CLI entry point (`opsgate worker`, Sentry on); once Celery
says it is ready (its task modules loaded, consuming), it writes the names in its `sys.modules`
and stops itself. None may be the API stack (fastapi, starlette, uvicorn, jinja2, the API and
the console), nor an SDK it does not call (openai's, with the model tiers off; numpy, which
retrieval no longer needs), nor the `celery` command group's plugins and shell (Flower and
tornado, prompt_toolkit). stripe-python is the Stripe adapter's client, so it is loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import ROOT

pytestmark = pytest.mark.integration

# Ready: write the loaded module names, then ask for Celery's warm shutdown (exit 0).
READY_DUMPS_MODULES = """
import json, os, signal, sys
from celery import signals

@signals.worker_ready.connect
def dump(**_):
    with open(os.environ["MODULES_FILE"], "w") as f:
        json.dump(sorted(sys.modules), f)
    os.kill(os.getpid(), signal.SIGTERM)

from app.cli import main
sys.argv = ["opsgate", *sys.argv[1:]]
main()
"""
NOT_IN_A_WORKER = (
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "app.api",
    "app.ui",
    "openai",
    "numpy",
    "flower",
    "tornado",
    "prompt_toolkit",
)


def test_a_worker_started_by_the_cli_loads_neither_the_api_stack_nor_unused_sdks(
    pg_env: dict[str, str], tmp_path: Path
) -> None:
    modules_file = tmp_path / "modules.json"
    env = dict(os.environ, MODULES_FILE=str(modules_file))
    env["SENTRY_DSN"] = "http://public@127.0.0.1:9/1"  # on, so its integrations are checked too
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.run(
            [sys.executable, "-c", READY_DUMPS_MODULES, "worker", "-c", "4", "-n", "imports@t"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    output = (tmp_path / "worker.log").read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    loaded: list[str] = json.loads(modules_file.read_text())
    # The worker did load its task modules (the check would be empty otherwise)
    assert {"tasks.plan", "tasks.execute", "tools.stripe.client", "app.llm.engine"} <= set(loaded)
    unwanted = [m for m in loaded if any(m == p or m.startswith(p + ".") for p in NOT_IN_A_WORKER)]
    assert unwanted == [], f"{len(unwanted)} unwanted modules, e.g. {unwanted[:10]}"
