"""The router: which tier a job's planning starts at, and why.

Cheap cases stay cheap: the `rules` tier (no model) always goes first, in the plan stage;
what it cannot plan starts at the workflow's tier and goes straight to `large` when the
input is long, mostly non-Latin text, has attachments, names a sensitive topic, or points
at an action of a risk class the configuration sends to `large`. Every choice carries its
reasons, which the model-call records keep.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from app.llm.config import ModelsConfig, ModelTier
from tools.catalog import CATALOG


@dataclass(frozen=True)
class Features:
    """What the router looks at in a job's input."""

    chars: int
    non_latin_share: float
    attachments: int
    keywords: tuple[str, ...]
    likely_actions: tuple[str, ...]


@dataclass
class Route:
    """The tiers to try, cheapest first, and the reasons for the first one."""

    tiers: list[ModelTier]
    reasons: list[str] = field(default_factory=list)


def _non_latin_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    return 1 - latin / len(letters)


def _has(text: str, phrase: str) -> bool:
    phrase = phrase.lower()
    # The substring test first: most phrases are absent, and then no word match can exist.
    return phrase in text and re.search(r"\b" + re.escape(phrase) + r"\b", text) is not None


def features(text: str, attachments: int, cfg: ModelsConfig) -> Features:
    """Measure a request's text for the router."""
    lowered = text.lower()
    keywords = tuple(k for k in cfg.router.large_when.keywords if _has(lowered, k))
    actions = tuple(
        tool
        for tool, words in cfg.router.action_words.items()
        if any(_has(lowered, w) for w in words)
    )
    return Features(len(text), _non_latin_share(text), attachments, keywords, actions)


def route(workflow: str, feats: Features, cfg: ModelsConfig) -> Route:
    """The tiers to try for one job, with the reasons for where it starts."""
    configured = cfg.tiers_from("small")
    start: ModelTier = cfg.router.start.get(workflow, configured[0])
    reasons = [f"workflow {workflow} starts at {start}"]
    when = cfg.router.large_when
    up: list[str] = []
    if feats.chars > when.input_chars_over:
        up.append(f"input is {feats.chars} chars (> {when.input_chars_over})")
    if feats.non_latin_share > when.non_latin_share_over:
        up.append(f"{feats.non_latin_share:.0%} of letters are not Latin")
    if when.attachments and feats.attachments:
        up.append(f"{feats.attachments} attachment(s)")
    if feats.keywords:
        up.append(f"keywords: {', '.join(feats.keywords)}")
    risky = [t for t in feats.likely_actions if t in CATALOG and CATALOG[t].risk.value in when.risk]
    if risky:
        up.append(f"likely {', '.join(risky)} ({CATALOG[risky[0]].risk.value})")
    if up and start != "large" and "large" in cfg.tiers:
        start = "large"
        reasons += [f"large because {why}" for why in up]
    return Route(cfg.tiers_from(start), reasons)


def request_text(value: Any) -> str:
    """All the free text in a job's input and context, for measuring."""
    if isinstance(value, str):
        return value + "\n"
    if isinstance(value, dict):
        return "".join(request_text(v) for v in value.values())
    if isinstance(value, list):
        return "".join(request_text(v) for v in value)
    return ""
