"""app/reasons.py: one escalation taxonomy, used by every stage; every write is verified."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.errors import EscalationRequired
from app.reasons import REASONS
from tools.base import Risk
from tools.catalog import CATALOG
from verifiers.chains import CHAINS

ROOT = Path(__file__).resolve().parents[2]
# Literal reasons handed to EscalationRequired(...) or escalate(reason=...) in the code.
_LITERAL = re.compile(r'(?:EscalationRequired\(\s*|reason=)"([a-z_]+)"')


def test_every_reason_the_code_names_is_in_the_taxonomy() -> None:
    named: set[str] = set()
    for folder in ("app", "tasks", "tools", "verifiers"):
        for path in (ROOT / folder).rglob("*.py"):
            named |= set(_LITERAL.findall(path.read_text()))
    # transition reasons are free text, the escalation ones are not
    named -= {"accepted", "wait over"}
    assert named, "the scan found no reason at all: the pattern is wrong"
    assert named <= set(REASONS), sorted(named - set(REASONS))


def test_the_taxonomy_is_the_issues_plus_shadow_proposals() -> None:
    assert set(REASONS) == {
        "policy_blocked",
        "approval_required",
        "verification_failed",
        "low_confidence",
        "schema_invalid",
        "refused",
        "no_model",
        "outcome_mismatch",
        "tool_error",
        "circuit_open",
        "budget_exceeded",
        "partial",
        "planner_requested",
        "shadow_proposal",
    }


def test_an_unknown_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not in the taxonomy"):
        EscalationRequired("something_new", "detail")


@pytest.mark.parametrize("tool", sorted(n for n, s in CATALOG.items() if s.risk is not Risk.READ))
def test_every_write_tool_has_rules_and_a_read_back(tool: str) -> None:
    chain = CHAINS[tool]
    assert chain.rules, f"{tool} has no proposal rules"
    assert callable(chain.read_back)
