"""Policy passages for the planner's prompt: BM25 over the documents in config/policies/.

Each document is split at its `##` headings; a passage's id is `policy:<file>#<heading>`
(`policy:refunds#eligibility`), which plans cite as evidence and the audit records.

The documents end each sentence with a marker naming the rule that enforces it
(`[rule: refund_within_window]`) or `[advisory]`; markers are for maintainers and
tests/unit/docs/test_policy_documents.py, so they are stripped from the text the model sees and
BM25 indexes (rule names would only add noise to the scores and tokens to the prompt).

Retrieval runs on every model plan, so it is kept cheap without changing a score: each
corpus term's contribution to every passage's score is computed once per index (the very
arithmetic of rank_bm25's `get_scores`, summed in the query's order; app/llm/bm25.py), and the
ranking of a query already seen (a repair, a re-plan, a redelivered job) is kept per query
digest in a bounded LRU that a changed document invalidates.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from app.core.lru import LRU
from app.llm.bm25 import Okapi
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


@dataclass(frozen=True)
class _Index:
    """The passages of one state of the documents and their BM25 index."""

    passages: list[Passage]
    bm25: Okapi

    def scores(self, query: list[str]) -> list[float]:
        """Each passage's BM25 score for the query's tokens."""
        return self.bm25.scores(query)


@functools.cache
def _index(folder: str, stamp: tuple[tuple[str, float], ...]) -> _Index:
    passages: list[Passage] = []
    for name, _ in stamp:
        path = Path(folder) / name
        passages += split_passages(path.stem, path.read_text())
    corpus = [_tokens(f"{p.title} {p.text}") for p in passages] or [[""]]
    return _Index(passages, Okapi(corpus))


def _current() -> _Index | None:
    folder = str(get_settings().config_dir / "policies")
    # The documents' names and mtimes, looked at on every call (a changed document is used
    # at once); os.scandir rather than Path.glob, which costs several times as much.
    try:
        with os.scandir(folder) as entries:
            # The names Path.glob("*.md") matched (hidden ones included, case-sensitive).
            stamp = tuple(
                sorted((e.name, e.stat().st_mtime) for e in entries if e.name.endswith(".md"))
            )
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _index(folder, stamp)


def all_passages() -> list[Passage]:
    """Every policy passage in config/policies/."""
    found = _current()
    return found.passages if found else []


# (index, query digest, limit) -> the ranking; the index in the key retires a stale entry.
_ranked: LRU[tuple[int, str, int], tuple[Passage, ...]] = LRU(1024)


def retrieve(query: str, limit: int = 3) -> list[Passage]:
    """The passages most relevant to `query` (none when nothing scores above zero)."""
    found = _current()
    if found is None or not found.passages:
        return []
    key = (id(found), hashlib.sha256(query.encode()).hexdigest(), limit)
    ranked = _ranked.get(key)
    if ranked is None:
        ranked = _rank(found, query, limit)
        _ranked.put(key, ranked)
    return list(ranked)


def _rank(index: _Index, query: str, limit: int) -> tuple[Passage, ...]:
    scores = index.scores(_tokens(query))
    passages = index.passages
    order = sorted(range(len(passages)), key=lambda i: scores[i], reverse=True)
    return tuple(passages[i] for i in order[:limit] if scores[i] > 0)
