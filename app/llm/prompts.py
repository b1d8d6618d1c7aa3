"""Prompts live in config/prompts/; a prompt's version is the hash of its content."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from app.core import configfile
from app.settings import get_settings


@dataclass(frozen=True)
class Prompt:
    """A prompt template and its version (`planner@1a2b3c4d5e6f`)."""

    name: str
    template: str

    @functools.cached_property
    def version(self) -> str:
        """name@ the first 12 hex digits of the template's SHA-256."""
        digest = hashlib.sha256(self.template.encode()).hexdigest()[:12]
        return f"{self.name}@{digest}"

    def render(self, **values: str) -> str:
        """Fill `{name}` fields; other braces (JSON in the text) are left alone."""
        text = self.template
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text


def load(name: str) -> Prompt:
    """config/prompts/<name>.md (read again when the file changes)."""
    relative = f"prompts/{name}.md"
    try:
        mtime = (get_settings().config_dir / relative).stat().st_mtime
    except OSError:
        return Prompt(name, configfile.read_text(relative))  # its error names the file
    return _loaded(str(get_settings().config_dir), name, mtime)


@functools.lru_cache(maxsize=64)
def _loaded(config_dir: str, name: str, mtime: float) -> Prompt:
    # Every model plan loads its prompt (twice): keep it until the file changes, with its
    # version computed once.
    return Prompt(name, configfile.read_text(f"prompts/{name}.md"))
