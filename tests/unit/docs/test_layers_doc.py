"""docs/architecture.md shows the layer order the build enforces ([tool.importlinter])."""

from __future__ import annotations

import re
import tomllib

from tests.support.env import ROOT


def _contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["id"] == contract_id]
    return contract


def test_the_architecture_page_lists_the_enforced_layers_in_order() -> None:
    enforced = [[name.strip() for name in row.split("|")] for row in _contract("layers")["layers"]]
    page = (ROOT / "docs" / "architecture.md").read_text()
    block = page.split("<!-- layers:", 1)[1].split("<!-- /layers -->", 1)[0]
    shown = [
        re.findall(r"`([\w.]+)`", line) for line in block.splitlines() if re.match(r"\d+\. ", line)
    ]
    assert shown == enforced


def test_every_package_is_in_a_layer() -> None:
    placed = {name.strip() for row in _contract("layers")["layers"] for name in str(row).split("|")}
    packages = {f"app.{p.name}" for p in (ROOT / "app").iterdir() if (p / "__init__.py").exists()}
    modules = {f"app.{p.stem}" for p in (ROOT / "app").glob("*.py") if p.stem != "__init__"}
    assert packages | modules | {"tasks", "tools", "verifiers", "evals"} == placed
