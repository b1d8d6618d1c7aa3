"""Files in config/: parsed into pydantic models, re-read when they change (no restart)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from app.errors import PermanentError
from app.settings import get_settings

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path, model: type[M]) -> M:
    """Parse and validate a YAML file; errors name the file and the key that is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PermanentError(f"config file {path}: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise PermanentError(f"config file {path}: {problems}") from exc


@functools.cache
def _cached(path: str, mtime: float, model: type[BaseModel]) -> Any:
    return load_yaml(Path(path), model)


def current(name: str, model: type[M]) -> M:
    """config/<name> as `model`, cached until the file's mtime changes."""
    path = get_settings().config_dir / name
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise PermanentError(f"config file {path}: {exc.strerror}") from exc
    result: M = _cached(str(path), mtime, model)
    return result


def read_text(relative: str) -> str:
    """A text file under config/ (prompts, policy documents)."""
    path = get_settings().config_dir / relative
    try:
        return path.read_text()
    except OSError as exc:
        raise PermanentError(f"config file {path}: {exc.strerror}") from exc
