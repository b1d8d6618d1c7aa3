"""Prompts live in config/prompts/; a prompt's version is the hash of its content."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from app.core import configfile


@dataclass(frozen=True)
class Prompt:
    """A prompt template and its version (`planner@1a2b3c4d5e6f`)."""

    name: str
    template: str

    @property
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
    """config/prompts/<name>.md."""
    return Prompt(name, configfile.read_text(f"prompts/{name}.md"))
