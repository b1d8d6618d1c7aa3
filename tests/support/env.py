"""The test environment: the project root, the shared servers, and forgetting cached settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "OPSGATE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_BASE_URL = os.environ.get("OPSGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379")

# Every variable opsgate reads; tests start from none of them set.
OPSGATE_VARS = [k for k in os.environ if k.startswith("OPSGATE_")] + [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "SENTRY_DSN",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
]


def reset_process_state() -> None:
    """Forget cached settings, engines and clients after the environment changed."""
    from app.core.clients import reset_clients
    from app.core.db import dispose_engine
    from app.settings import get_settings

    get_settings.cache_clear()
    dispose_engine()
    reset_clients()


def policy_dir(tmp_path: Any, monkeypatch: Any, change: Any = None) -> Any:
    """A copy of config/ with `change(policy_dict)` applied, used by this process from now
    on and by the workers started after this call."""
    import shutil

    import yaml

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    if change is not None:
        policy = yaml.safe_load((config / "policy.yaml").read_text())
        change(policy)
        (config / "policy.yaml").write_text(yaml.safe_dump(policy))
    monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(config))
    reset_process_state()
    return config
