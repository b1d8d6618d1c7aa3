"""Every rule opsgate enforces, by name, with where it lives: what a policy document's
`[rule: ...]` marker may name (tests/unit/docs/test_policy_documents.py holds them to it)."""

from __future__ import annotations

from app.controls import policy
from verifiers.chains import CHAINS
from verifiers.common import COMMON_RULES
from verifiers.plan_rules import PLAN_RULES
from verifiers.soft import SIGNALS


def enforceable_rules() -> dict[str, str]:
    """Rule name -> where it is enforced (verifier chains, plan rules, soft signals, policy)."""
    found: dict[str, set[str]] = {}

    def add(name: str, where: str) -> None:
        found.setdefault(name, set()).add(where)

    for rule in COMMON_RULES:
        add(rule.name, "verifiers/common.py (every write)")
    for tool, chain in CHAINS.items():
        for rule in chain.rules:
            add(rule.name, f"verifier chain of {tool} (verifiers/chains.py)")
    for plan_rule in PLAN_RULES:
        add(plan_rule.name, "verifiers/plan_rules.py (the whole plan)")
    for signal in SIGNALS:
        add(signal.name, "soft check signal (verifiers/soft.py)")
    for name in policy.RULE_NAMES:
        add(name, "policy decision (app/controls/policy.py, config/policy.yaml)")
    return {name: "; ".join(sorted(where)) for name, where in sorted(found.items())}
