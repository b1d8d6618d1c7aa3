"""The scripted OpenAI-compatible model server as tests drive it, and model config copies."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.env import ROOT


class ModelServer:
    """The local OpenAI-compatible server (tools/sandbox/llm/routes.py) and its controls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = url.removesuffix("/v1")

    def script(self, *entries: dict[str, Any]) -> None:
        """Queue scripted answers."""
        resp = httpx.post(f"{self.root}/_models/script", json={"responses": list(entries)})
        resp.raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """The chat completion requests received so far."""
        resp = httpx.get(f"{self.root}/_models/requests", timeout=10)
        resp.raise_for_status()
        return list(resp.json()["requests"])

    def reset(self) -> None:
        """No scripted answers, no recorded requests."""
        httpx.delete(f"{self.root}/_models/script", timeout=10).raise_for_status()
        httpx.delete(f"{self.root}/_models/requests", timeout=10).raise_for_status()


def models_config_dir(tmp_path: Path, **tiers: dict[str, Any]) -> Path:
    """A copy of config/ whose models.yaml has `tiers` merged in (e.g. short timeouts)."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    path = target / "models.yaml"
    data = yaml.safe_load(path.read_text())
    for name, changes in tiers.items():
        if name in ("budgets", "router", "cache"):
            data[name] = {**data.get(name, {}), **changes}
        else:
            data["tiers"][name].update(changes)
    path.write_text(yaml.safe_dump(data))
    return target


# The models config/models.yaml names for the small and large tiers.
SMALL, LARGE = "gpt-4o-mini", "gpt-4o"


def quick_models(tmp_path: Path, monkeypatch: Any) -> None:
    """Short model timeouts (slow answers are quick to test) and both tiers' breakers closed."""
    from app.controls import breaker
    from tests.support.env import reset_process_state

    config = models_config_dir(
        tmp_path, small={"timeout_seconds": 1.0}, large={"timeout_seconds": 1.0}
    )
    monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(config))
    reset_process_state()
    for name in (SMALL, LARGE):
        breaker.reset(f"model:{name}")
