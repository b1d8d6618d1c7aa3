"""Files in config/: parsed into pydantic models, re-read when they change (no restart)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from app.errors import PermanentError, one_line
from app.settings import get_settings

M = TypeVar("M", bound=BaseModel)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (or of its nearest parent that exists)."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line


def load_yaml(path: Path, model: type[M]) -> M:
    """Parse and validate a YAML file; errors name the file, the line and the key."""
    try:
        text = path.read_text()
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise PermanentError(f"config file {path}: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        root = yaml.compose(text)
        problems = one_line(exc, where=lambda loc: f"line {_line_of(root, loc)}")
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
