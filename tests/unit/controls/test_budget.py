"""app/controls/budget.py: the daily model budget, reserved in Redis before a call and settled
from the ledger after it, on real PostgreSQL and Redis."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from app.controls import budget
from app.errors import EscalationRequired


def test_a_budget_is_reserved_settled_and_refused_when_spent(pg_env: dict[str, str]) -> None:
    held = budget.reserve("wf", Decimal("0.010"), Decimal("0.004"))
    assert budget.held("wf") == Decimal("0.004") and budget.spent("wf") == 0
    budget.settle(held, Decimal("0.001"))
    # The ledger has the real cost; the counter gave back the unused reservation
    assert budget.spent("wf") == budget.held("wf") == Decimal("0.001")
    budget.reserve("wf", Decimal("0.010"), Decimal("0.009"))
    with pytest.raises(EscalationRequired) as caught:
        budget.reserve("wf", Decimal("0.010"), Decimal("0.0001"))
    assert caught.value.reason == "budget_exceeded"
    assert caught.value.evidence["budget"] == "budgets.daily_usd.wf"
    # Another scope has its own budget; no limit means no refusal
    budget.reserve("other", None, Decimal("5"))
    assert budget.held("other") == Decimal("5")


def test_a_lost_counter_is_rebuilt_from_the_ledger(pg_env: dict[str, str]) -> None:
    from app.core import broker

    budget.settle(budget.reserve("wf", Decimal("1"), Decimal("0.5")), Decimal("0.7"))
    # When Redis forgets the day's counter (a restart)
    for key in broker.client().scan_iter("opsgate:budget:*"):
        broker.client().delete(key)
    # Then the next reservation starts from the committed spend, not from zero
    with pytest.raises(EscalationRequired):
        budget.reserve("wf", Decimal("1"), Decimal("0.4"))
    budget.reserve("wf", Decimal("1"), Decimal("0.3"))
    assert budget.held("wf") == Decimal("1.0")


def test_concurrent_reservations_never_overspend(pg_env: dict[str, str]) -> None:
    # Given 20 workers each reserving 0.01 USD against a 0.10 USD budget at once
    outcomes: list[bool] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            budget.reserve("race", Decimal("0.10"), Decimal("0.01"))
            ok = True
        except EscalationRequired:
            ok = False
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly ten fit and the counter says so
    assert outcomes.count(True) == 10
    assert budget.held("race") == Decimal("0.10")
