"""verifiers/plan_rules.py: what no single step shows, caught over the whole plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifiers.plan_rules import check_plan


@dataclass(frozen=True)
class Call:
    """A planned call as the plan rules read one (verifiers.base.PlannedCall)."""

    step_id: str
    tool: str
    args: dict[str, Any]


def step(step_id: str, tool: str, **args: Any) -> Call:
    return Call(step_id, tool, args)


REFUND = {"charge_id": "ch_1001", "amount": 1000, "currency": "usd", "reason": "duplicate"}


def test_a_plain_plan_passes() -> None:
    failure, verdicts = check_plan(
        [step("s1", "stripe.refund", **REFUND), step("s2", "zendesk.add_comment", ticket_id=1)]
    )
    assert failure is None and all(v.ok for v in verdicts)


def test_the_same_write_twice_is_refused() -> None:
    failure, _ = check_plan(
        [
            step("s1", "zendesk.add_comment", ticket_id=1),
            step("s2", "zendesk.add_comment", ticket_id=1),
        ]
    )
    assert failure is not None
    assert (failure.rule, failure.evidence["steps"]) == ("no_repeated_write", ["s1", "s2"])


def test_repeated_reads_are_fine() -> None:
    failure, _ = check_plan(
        [
            step("s1", "stripe.get_charge", charge_id="ch_1"),
            step("s2", "stripe.get_charge", charge_id="ch_1"),
        ]
    )
    assert failure is None


def test_two_different_refunds_of_one_charge_are_refused() -> None:
    failure, _ = check_plan(
        [
            step("s1", "stripe.refund", **REFUND),
            step("s2", "stripe.refund", **dict(REFUND, amount=900)),
        ]
    )
    assert failure is not None
    assert (failure.rule, failure.evidence) == (
        "one_refund_per_charge",
        {"charge_id": "ch_1001", "steps": ["s1", "s2"]},
    )


def test_arguments_that_no_longer_validate_fail_the_common_rule() -> None:
    from verifiers.base import Facts, run_chain
    from verifiers.common import COMMON_RULES

    good = Facts("stripe.refund", dict(REFUND), {"ticket_id": 1})
    bad = Facts("stripe.refund", dict(REFUND, amount=-5), {"ticket_id": 1})
    assert run_chain(COMMON_RULES, good)[0] is None
    failure = run_chain(COMMON_RULES, bad)[0]
    assert failure is not None and failure.rule == "arguments_valid"
    assert "amount" in failure.detail
