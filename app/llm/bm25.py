"""BM25 Okapi, the arithmetic of rank_bm25's `BM25Okapi` in plain Python.

rank_bm25 computes with numpy, whose import alone keeps ~13 MB resident in every worker process
(and starts an OpenBLAS thread) for vectors as long as the policy documents have passages (a
few dozen). This is its arithmetic, operation for operation and in the same order, so every
score is bit for bit rank_bm25's (tests/unit/llm/test_hot_path.py compares them with rank_bm25,
a dev dependency).
"""

from __future__ import annotations

import math
from collections import Counter


class Okapi:
    """A BM25 Okapi index of tokenized documents, with each term's contribution to every
    document's score computed once (what `get_scores` would compute per query)."""

    def __init__(
        self, corpus: list[list[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
    ) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.doc_freqs = [dict(Counter(doc)) for doc in corpus]
        self.doc_len = [len(doc) for doc in corpus]
        self.corpus_size = len(corpus)
        self.avgdl = sum(self.doc_len) / self.corpus_size
        self.idf = self._idf()
        self.terms = {term: self._vector(term) for term in self.idf}
        # Each term's non-zero contributions, (document, value): a query adds only these, since
        # adding a zero changes no float (each score stays bit for bit get_scores').
        self.sparse = {
            term: tuple((i, v) for i, v in enumerate(vector) if v != 0)
            for term, vector in self.terms.items()
        }

    def _idf(self) -> dict[str, float]:
        # Documents containing each word, in first-seen order (the order rank_bm25 sums in).
        nd: dict[str, int] = {}
        for freqs in self.doc_freqs:
            for word in freqs:
                nd[word] = nd.get(word, 0) + 1
        idf: dict[str, float] = {}
        idf_sum = 0.0
        negative = []
        for word, freq in nd.items():
            value = math.log(self.corpus_size - freq + 0.5) - math.log(freq + 0.5)
            idf[word] = value
            idf_sum += value
            if value < 0:
                negative.append(word)
        # A word in more than half the documents gets a floor of epsilon x the average idf.
        eps = self.epsilon * (idf_sum / len(idf)) if idf else 0.0
        for word in negative:
            idf[word] = eps
        return idf

    def _vector(self, term: str) -> tuple[float, ...]:
        idf = self.idf.get(term) or 0
        k1, b, avgdl = self.k1, self.b, self.avgdl
        return tuple(
            idf * (q * (k1 + 1) / (q + k1 * (1 - b + b * dl / avgdl)))
            for q, dl in zip(
                ((doc.get(term) or 0) for doc in self.doc_freqs), self.doc_len, strict=True
            )
        )

    def scores(self, query: list[str]) -> list[float]:
        """Every document's score for the query terms (rank_bm25's `get_scores`)."""
        score = [0.0] * self.corpus_size
        for term in query:
            # A term outside the corpus adds 0 in get_scores; skipping it changes no score.
            for i, value in self.sparse.get(term, ()):
                score[i] += value
        return score
