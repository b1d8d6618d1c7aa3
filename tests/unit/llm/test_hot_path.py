"""What keeps the model call's hot path cheap changes no result: retrieval's BM25 (plain Python,
precomputed sparse term contributions) scores exactly as rank_bm25 does and a remembered
ranking is the ranking; a message text remembered as free of personal data is still redacted
when it is not; the plan's steps are checked against the branch their tool names while the
schema sent stays the same."""

from __future__ import annotations

import json
import random

import pydantic
import pytest
from openai.lib._pydantic import to_strict_json_schema
from rank_bm25 import BM25Okapi

from app.core.redaction import Placeholders
from app.llm import retrieval
from app.llm.bm25 import Okapi
from app.llm.engine import redacted
from app.llm.schema import plan_model


def test_scores_equal_rank_bm25_bit_for_bit() -> None:
    index = retrieval._current()
    assert index is not None and index.passages
    corpus = [retrieval._tokens(f"{p.title} {p.text}") for p in index.passages]
    reference = BM25Okapi(corpus)
    assert index.bm25.idf == reference.idf
    words = [*index.bm25.terms, "not-a-policy-word", "zzz"]
    rng = random.Random(20)
    for _ in range(500):
        query = [rng.choice(words) for _ in range(rng.randint(0, 40))]
        assert index.scores(query) == reference.get_scores(query).tolist()


def test_a_word_in_most_documents_gets_the_epsilon_floor_as_in_rank_bm25() -> None:
    corpus = [["refund", "card"], ["refund", "seat"], ["refund"], ["invoice", "card", "card"]]
    ours, reference = Okapi(corpus), BM25Okapi(corpus)
    assert ours.idf == reference.idf and ours.idf["refund"] > 0  # floored, not negative
    for query in (["refund"], ["card", "card", "seat"], ["invoice", "nothing"], []):
        assert ours.scores(query) == reference.get_scores(query).tolist()


def test_a_remembered_ranking_is_the_ranking() -> None:
    index = retrieval._current()
    assert index is not None
    query = "I was charged twice for my seat and want a refund of the duplicate charge"
    first = retrieval.retrieve(query)
    assert first and [p.id for p in first] == [p.id for p in retrieval._rank(index, query, 3)]
    # From the LRU now, and a copy: the caller may change its list
    again = retrieval.retrieve(query)
    assert again == first and again is not first
    assert retrieval.retrieve("qqq zzz") == []


def test_redaction_skips_only_texts_it_left_unchanged() -> None:
    clean = {"role": "system", "content": "Refunds within 30 days, up to 50 USD. [policy:x#y]"}
    pii = {"role": "user", "content": "Write to ann.lee@example.com or +1 (415) 555-0100."}
    for _ in range(2):
        ph = Placeholders()
        sent = redacted([clean, pii], ph)
        assert sent[0] == clean
        assert sent[1]["content"] == "Write to [email_1] or [phone_1]."
        assert ph.values == {"[email_1]": "ann.lee@example.com", "[phone_1]": "+1 (415) 555-0100"}


def test_steps_are_tagged_by_tool_and_the_schema_sent_is_still_an_any_of() -> None:
    schema = to_strict_json_schema(plan_model())
    text = json.dumps(schema)
    assert '"oneOf"' not in text and '"discriminator"' not in text
    assert len(schema["properties"]["steps"]["items"]["anyOf"]) == 12
    # A step with bad arguments is checked against the branch its tool names, and only it
    answer = {
        "workflow": "support_refund",
        "summary": "x",
        "confidence": 0.5,
        "steps": [
            {
                "tool": "stripe.refund",
                "args": {"charge_id": "ch_1", "amount": "5", "currency": "usd", "reason": None},
                "rationale": "",
                "evidence": [],
            }
        ],
        "escalate": None,
    }
    with pytest.raises(pydantic.ValidationError) as invalid:
        plan_model().model_validate_json(json.dumps(answer))
    assert [e["loc"][:3] for e in invalid.value.errors()] == [("steps", 0, "stripe.refund")]
