"""Many refundable tickets at once, for load, chaos and benchmark runs.

Each case is a ticket the rules planner recognizes and the verifiers accept: the requester's
email is the charge's customer email, the amount is the whole charge (25.00 USD, under the
autonomy cap of config/policy.yaml), and the ticket is open. Ids start far above the demo
seed so the demo data stays as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from tools.sandbox.seed import Ticket, _seed_ticket
from tools.sandbox.store import Store, iso_z, utc_now

FIRST_USER_ID = 200_000
FIRST_TICKET_ID = 100_000
AMOUNT = 2500
CURRENCY = "usd"


@dataclass(frozen=True)
class RefundCase:
    """One refundable ticket: what a job submission needs, and what the refund will be."""

    ticket_id: int
    user_id: int
    charge_id: str
    amount: int
    currency: str


def add_refund_cases(store: Store, count: int, start: int = 0) -> list[RefundCase]:
    """Add `count` refundable cases numbered from `start` (ids are deterministic)."""
    now = utc_now().replace(microsecond=0)
    cases = []
    with store.transaction() as conn:
        for n in range(start, start + count):
            # No underscore after ch_: the rules planner's charge pattern is ch_[A-Za-z0-9]+.
            case = RefundCase(
                FIRST_TICKET_ID + n, FIRST_USER_ID + n, f"ch_case{n}", AMOUNT, CURRENCY
            )
            email, name = f"case{n}@example.com", f"Case User{n}"
            conn.execute(
                "INSERT INTO zd_users (id, name, email, role, created_at) VALUES (?, ?, ?, ?, ?)",
                (case.user_id, name, email, "end-user", iso_z(now - timedelta(days=90))),
            )
            conn.execute(
                "INSERT INTO customers (id, email, name) VALUES (?, ?, ?)",
                (f"cus_case{n}", email, name),
            )
            conn.execute(
                "INSERT INTO charges (id, customer_id, amount, amount_refunded, currency,"
                " description, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    case.charge_id,
                    f"cus_case{n}",
                    AMOUNT,
                    0,
                    CURRENCY,
                    f"Order case {n}",
                    int((now - timedelta(days=2)).timestamp()),
                ),
            )
            _seed_ticket(
                conn,
                Ticket(
                    case.ticket_id,
                    case.user_id,
                    "Refund for duplicate charge",
                    f"Hi, I was charged twice. Please refund ${AMOUNT / 100:.2f} for charge "
                    f"{case.charge_id}. Thanks, {name}",
                    "open",
                    ("refund",),
                ),
                iso_z(now - timedelta(hours=1)),
            )
            cases.append(case)
    return cases


def as_json(cases: list[RefundCase]) -> list[dict[str, Any]]:
    """Plain data for the HTTP answer."""
    return [asdict(c) for c in cases]
