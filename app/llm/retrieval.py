"""Policy passages for the planner's prompt: BM25 over the documents in config/policies/.

Each document is split at its `##` headings; a passage's id is `policy:<file>#<heading>`
(`policy:refunds#eligibility`), which plans cite as evidence and the audit records.

The documents end each sentence with a marker naming the rule that enforces it
(`[rule: refund_within_window]`) or `[advisory]`; markers are for maintainers and
tests/unit/docs/test_policy_documents.py, so they are stripped from the text the model sees and
BM25 indexes (rule names would only add noise to the scores and tokens to the prompt).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from rank_bm25 import BM25Okapi

from app.settings import get_settings

_WORD = re.compile(r"[a-z0-9]+")
# A rule marker and the space before it: `[rule: a, b]` or `[advisory]`.
MARKER = re.compile(r"[ \t]*\[(?:rule:[^\]]*|advisory)\]")


@dataclass(frozen=True)
class Passage:
    """One section of a policy document."""

    id: str
    title: str
    text: str


def _slug(title: str) -> str:
    return "-".join(_WORD.findall(title.lower())) or "section"


def _tokens(text: str) -> list[str]:
    # A light stemmer: "refunds"/"refunded"/"refunding" all count as "refund".
    return [
        re.sub(r"(ing|ed|es|s)$", "", w) if len(w) > 4 else w for w in _WORD.findall(text.lower())
    ]


def split_passages(name: str, text: str) -> list[Passage]:
    """The `##` sections of one markdown document (the text before the first is skipped)."""
    passages = []
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        text = MARKER.sub("", body).strip()
        passages.append(Passage(f"policy:{name}#{_slug(title)}", title.strip(), text))
    return passages


@functools.cache
def _index(folder: str, stamp: tuple[tuple[str, float], ...]) -> tuple[list[Passage], BM25Okapi]:
    passages: list[Passage] = []
    for name, _ in stamp:
        path = Path(folder) / name
        passages += split_passages(path.stem, path.read_text())
    corpus = [_tokens(f"{p.title} {p.text}") for p in passages] or [[""]]
    return passages, BM25Okapi(corpus)


def _current() -> tuple[list[Passage], BM25Okapi] | None:
    folder = get_settings().config_dir / "policies"
    if not folder.is_dir():
        return None
    stamp = tuple(sorted((p.name, p.stat().st_mtime) for p in folder.glob("*.md")))
    return _index(str(folder), stamp)


def all_passages() -> list[Passage]:
    """Every policy passage in config/policies/."""
    found = _current()
    return found[0] if found else []


def retrieve(query: str, limit: int = 3) -> list[Passage]:
    """The passages most relevant to `query` (none when nothing scores above zero)."""
    found = _current()
    if found is None or not found[0]:
        return []
    passages, index = found
    scores = index.get_scores(_tokens(query))
    ranked = sorted(range(len(passages)), key=lambda i: scores[i], reverse=True)
    return [passages[i] for i in ranked[:limit] if scores[i] > 0]
