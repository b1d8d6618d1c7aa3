"""Refundable work for benchmarks: the sandbox's own bulk cases on a freshly seeded store."""

from __future__ import annotations

from tools.sandbox.bulk import RefundCase
from tools.sandbox.bulk import add_refund_cases as _add
from tools.sandbox.seed import reset
from tools.sandbox.store import Store

BenchCase = RefundCase


def populate(db_path: str, count: int) -> list[RefundCase]:
    """Reset the sandbox store at db_path to its demo seed, then add `count` refund cases."""
    store = Store(db_path)
    reset(store)
    return _add(store, count)
