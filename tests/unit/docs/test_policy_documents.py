"""Every sentence of a policy document names the rule that enforces it, or says it is advice.

A sentence in a `##` section of config/policies/*.md ends with `[rule: a, b]` (each name a
rule opsgate enforces: verifiers.registry.enforceable_rules) or `[advisory]` (guidance for
the model that no code holds it to). A new sentence without a marker fails here.
"""

from __future__ import annotations

import re

import pytest

from app.controls import policy
from app.llm.retrieval import MARKER, split_passages
from tests.support.env import ROOT
from verifiers.registry import enforceable_rules

DOCUMENTS = ("refunds", "invoices", "access")
_MARKER = re.compile(r"\[(?:rule:\s*(?P<names>[^\]]*)|advisory)\]")
# A sentence ends at . ! or ? followed by space and a capital letter (or a backtick).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")


def sections(name: str) -> dict[str, str]:
    """The `##` sections of a document, title -> body (one line: wrapped lines joined)."""
    text = (ROOT / "config" / "policies" / f"{name}.md").read_text()
    found = {}
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        found[title.strip()] = " ".join(body.split())
    return found


def marked_sentences(body: str) -> tuple[list[tuple[str, list[str] | None]], list[str]]:
    """(sentence, rule names or None for advisory) for each marked sentence, and problems."""
    problems: list[str] = []
    found: list[tuple[str, list[str] | None]] = []
    pos = 0
    for match in _MARKER.finditer(body):
        sentence = body[pos : match.start()].strip()
        pos = match.end()
        if not sentence:
            problems.append(f"a marker with no sentence before it: {match.group(0)}")
            continue
        unmarked = _SENTENCE_END.split(sentence)
        if len(unmarked) > 1:
            problems.append(f"sentence without a marker: {unmarked[0]!r}")
        names = match.group("names")
        if names is None:
            found.append((sentence, None))
            continue
        rules = [n.strip() for n in names.split(",") if n.strip()]
        if not rules:
            problems.append(f"an empty [rule: ] marker after {sentence!r}")
        found.append((sentence, rules))
    rest = body[pos:].strip()
    if rest:
        problems.append(f"sentence without a marker: {rest!r}")
    return found, problems


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_sentence_carries_a_marker(name: str) -> None:
    problems = []
    for title, body in sections(name).items():
        found, wrong = marked_sentences(body)
        problems += [f"{name}.md ## {title}: {p}" for p in wrong]
        if not found:
            problems.append(f"{name}.md ## {title}: no marked sentence")
    assert problems == []


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_marker_names_a_rule_that_exists(name: str) -> None:
    known = enforceable_rules()
    unknown = sorted(
        {
            f"{name}.md ## {title}: {rule}"
            for title, body in sections(name).items()
            for _, rules in marked_sentences(body)[0]
            for rule in rules or []
            if rule not in known
        }
    )
    assert unknown == []


def test_the_parser_refuses_an_unmarked_or_unknown_sentence() -> None:
    _, problems = marked_sentences(
        "One rule. [rule: a] Then a new promise. Another one. [advisory]"
    )
    assert problems == ["sentence without a marker: 'Then a new promise.'"]
    _, problems = marked_sentences("A rule. [rule: a] A trailing promise.")
    assert problems == ["sentence without a marker: 'A trailing promise.'"]
    found, problems = marked_sentences("Two rules. [rule: a, b] Advice. [advisory]")
    assert problems == [] and found == [("Two rules.", ["a", "b"]), ("Advice.", None)]


def test_the_policy_names_every_rule_its_decisions_give() -> None:
    # app/controls/policy.py states its rule names in RULE_NAMES; a decision under another name
    # would be one no document could cite.
    controls = ROOT / "app" / "controls"
    source = (controls / "policy.py").read_text() + (controls / "caps.py").read_text()
    given = set(re.findall(r'verdict\(\s*"\w+",\s*"(\w+)"', source))
    given |= set(re.findall(r'return \(\s*"(\w+)",\s*f?"', source))
    given |= set(re.findall(r'\(\s*"(daily_cap_\w+)",', source))
    assert given and given <= set(policy.RULE_NAMES), given - set(policy.RULE_NAMES)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_model_sees_no_markers_and_citations_keep_their_ids(name: str) -> None:
    text = (ROOT / "config" / "policies" / f"{name}.md").read_text()
    passages = split_passages(name, text)
    assert [p.title for p in passages] == list(sections(name))
    for passage in passages:
        assert not MARKER.search(passage.text) and "[rule:" not in passage.text
        assert "[advisory]" not in passage.text
    if name == "refunds":
        ids = {p.id for p in passages}
        assert {"policy:refunds#eligibility", "policy:refunds#autonomy"} <= ids
