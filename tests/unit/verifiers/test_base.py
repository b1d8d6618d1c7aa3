"""verifiers/base.py: run_chain runs rules in order and stops at the first failure."""

from __future__ import annotations

from verifiers.base import Facts, Rule, Verdict, run_chain


class Recording(Rule):
    """A rule that records that it ran and answers a fixed verdict."""

    def __init__(self, name: str, ok: bool, ran: list[str]) -> None:
        self.name, self.ok, self.ran = name, ok, ran

    def check(self, facts: Facts) -> Verdict:
        self.ran.append(self.name)
        return self.passed("fine") if self.ok else self.failed("nope", seen=facts.tool)


FACTS = Facts(tool="t", args={}, job_input={})


def test_stops_at_the_first_failure() -> None:
    ran: list[str] = []
    rules = [Recording("a", True, ran), Recording("b", False, ran), Recording("c", False, ran)]

    failure, verdicts = run_chain(rules, FACTS)

    assert ran == ["a", "b"]
    assert failure is not None
    assert (failure.rule, failure.ok, failure.evidence) == ("b", False, {"seen": "t"})
    assert [v.rule for v in verdicts] == ["a", "b"]


def test_all_passing_runs_every_rule_in_order() -> None:
    ran: list[str] = []
    rules = [Recording(n, True, ran) for n in ("x", "y", "z")]

    failure, verdicts = run_chain(rules, FACTS)

    assert failure is None
    assert ran == ["x", "y", "z"] and [v.ok for v in verdicts] == [True, True, True]


def test_empty_chain_passes() -> None:
    assert run_chain([], FACTS) == (None, [])
