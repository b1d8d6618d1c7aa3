"""The downstream sandbox as tests drive it: a running `opsgate sandbox` and its ledger."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.processes import Proc


class Sandbox:
    """A running `opsgate sandbox` with helpers to read its ledger."""

    def __init__(self, url: str, proc: Proc) -> None:
        self.url, self.proc = url, proc

    def ledger(self, **filters: str) -> list[dict[str, Any]]:
        """The writes the sandbox received."""
        resp = httpx.get(f"{self.url}/_sandbox/ledger", params=filters, timeout=10)
        resp.raise_for_status()
        return list(resp.json()["writes"])

    def applied(self, system: str | None = None) -> list[dict[str, Any]]:
        """The writes that changed state (idempotent replays excluded)."""
        return [
            w for w in self.ledger(outcome="applied") if system is None or w["system"] == system
        ]

    def refund_cases(self, count: int) -> list[dict[str, Any]]:
        """Add `count` refundable tickets (each with its own user and charge)."""
        resp = httpx.post(f"{self.url}/_sandbox/refund_cases", params={"count": count}, timeout=30)
        resp.raise_for_status()
        return list(resp.json()["cases"])

    def add_tickets(self, *tickets: dict[str, Any]) -> None:
        """Add tickets (and later comments) without touching the ledger of writes."""
        resp = httpx.post(f"{self.url}/_sandbox/tickets", json=list(tickets), timeout=10)
        resp.raise_for_status()

    def reset(self) -> None:
        """Reseed the sandbox."""
        httpx.post(f"{self.url}/_sandbox/reset", timeout=10).raise_for_status()


# A support ticket (add it with `sandbox.add_tickets`) the rules tier cannot plan (it names two
# charges: which one is meant is for a model or a person) that states the charge and the amount:
# every signal of the deterministic scorer holds for a plan refunding $30.00 on ch_1003.
GROUNDED_TICKET: dict[str, Any] = {
    "id": 4850,
    "requester_id": 103,
    "subject": "Second seat",
    "description": "I cancelled one of my two seats within the hour; my colleague's seat is "
    "on charge ch_1004 and stays. Please give me the $30.00 for my seat back on charge ch_1003.",
    "status": "open",
    "tags": ["refund"],
}
