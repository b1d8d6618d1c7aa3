"""Rules over the whole plan, run before any step's own chain: what no single step shows.

A step's chain judges it against the systems as they are now, before any step has run, so
two refunds of the same charge each look fine on their own. These rules catch that.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from app.audit.chain import canonical_json
from tools.base import Risk
from tools.catalog import get_tool
from verifiers.base import PlannedCall, Verdict, run_chain


class PlanRule:
    """One rule over all of a plan's steps."""

    name = "plan_rule"

    def check(self, steps: Sequence[PlannedCall]) -> Verdict:
        """Judge the plan."""
        raise NotImplementedError


class NoRepeatedWrite(PlanRule):
    """No write appears twice in one plan (a duplicate would be a second effect)."""

    name = "no_repeated_write"

    def check(self, steps: Sequence[PlannedCall]) -> Verdict:
        seen: dict[str, str] = {}
        for step in steps:
            if get_tool(step.tool).risk is Risk.READ:
                continue
            action = step.tool + canonical_json(step.args)
            if action in seen:
                return Verdict(
                    False,
                    self.name,
                    f"steps {seen[action]} and {step.step_id} make the same {step.tool}",
                    {"tool": step.tool, "steps": [seen[action], step.step_id]},
                )
            seen[action] = step.step_id
        return Verdict(True, self.name, "no write repeats")


class OneRefundPerCharge(PlanRule):
    """At most one refund per charge in a plan: the refundable balance is checked per step
    against the charge as it is now, so two would each pass and together overdraw it."""

    name = "one_refund_per_charge"

    def check(self, steps: Sequence[PlannedCall]) -> Verdict:
        by_charge: dict[str, list[str]] = defaultdict(list)
        for step in steps:
            if step.tool == "stripe.refund":
                by_charge[str(step.args.get("charge_id"))].append(step.step_id)
        for charge, ids in by_charge.items():
            if len(ids) > 1:
                return Verdict(
                    False,
                    self.name,
                    f"the plan refunds charge {charge} {len(ids)} times",
                    {"charge_id": charge, "steps": ids},
                )
        return Verdict(True, self.name, "one refund per charge at most")


PLAN_RULES: list[PlanRule] = [NoRepeatedWrite(), OneRefundPerCharge()]


def check_plan(steps: Sequence[PlannedCall]) -> tuple[Verdict | None, list[Verdict]]:
    """Run the plan rules in order; the first failure stops them."""
    return run_chain(PLAN_RULES, steps)
