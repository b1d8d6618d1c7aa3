"""`opsgate eval` run as a user runs it, from an environment that points at nothing real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.env import OPSGATE_VARS

# What the caller's environment points at: nothing answers there, and production is claimed.
HOSTILE = {
    "OPSGATE_ENV": "production",
    "OPSGATE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/production",
    "OPSGATE_REDIS_URL": "redis://127.0.0.1:1/0",
    "OPSGATE_STRIPE_API_BASE": "http://127.0.0.1:1",
    "OPSGATE_ZENDESK_API_BASE": "http://127.0.0.1:1",
    "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
}


def run_eval(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`opsgate eval ARGS` in `cwd` with no OPSGATE_* variable of ours and HOSTILE set."""
    env = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    return subprocess.run(
        [sys.executable, "-m", "app", "eval", *args],
        cwd=cwd,
        env={**env, **HOSTILE},
        capture_output=True,
        text=True,
        timeout=600,
    )
