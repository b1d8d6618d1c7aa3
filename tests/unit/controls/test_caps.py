"""app/controls/caps.py: daily caps reserved on the embedded SQLite, per customer and fleet-wide,
never twice for one step, and never past the cap."""

from __future__ import annotations

from pathlib import Path

from app.controls import caps
from app.controls.policy import DailyCaps
from app.core.db import session_scope
from app.models import CapReservation

CAPS = DailyCaps(per_customer={"usd": 10_000}, fleet={"usd": 25_000})
CUSTOMER = "support_refund:stripe.refund:customer:zendesk-user:101"
FLEET = "support_refund:stripe.refund:fleet"


def scopes(
    requester: str = "zendesk-user:101", currency: str = "usd"
) -> list[tuple[str, str, int]]:
    return caps.scopes_for("support_refund", "stripe.refund", requester, CAPS, currency)


def test_a_call_in_a_capped_currency_counts_against_the_customer_and_the_fleet() -> None:
    assert scopes() == [
        ("daily_cap_customer", CUSTOMER, 10_000),
        ("daily_cap_fleet", FLEET, 25_000),
    ]
    assert scopes(currency="eur") == []


def test_a_reservation_is_counted_in_every_scope(sqlite_db: Path) -> None:
    assert caps.reserve("job-1:s1:r1", scopes(), "usd", 4_000) is None

    assert caps.used(CUSTOMER, "usd") == 4_000
    assert caps.used(FLEET, "usd") == 4_000
    with session_scope() as session:
        held = session.get(CapReservation, "job-1:s1:r1")
        assert held is not None
        assert (held.amount, held.currency, sorted(held.scopes)) == (
            4_000,
            "usd",
            [CUSTOMER, FLEET],
        )


def test_a_retried_step_never_reserves_twice(sqlite_db: Path) -> None:
    caps.reserve("job-1:s1:r1", scopes(), "usd", 4_000)

    assert caps.reserve("job-1:s1:r1", scopes(), "usd", 4_000) is None

    assert caps.used(CUSTOMER, "usd") == 4_000


def test_the_customer_cap_refuses_what_would_pass_it_and_keeps_nothing(sqlite_db: Path) -> None:
    caps.reserve("job-1:s1:r1", scopes(), "usd", 9_000)

    over = caps.reserve("job-2:s1:r1", scopes(), "usd", 1_001)

    assert over == caps.OverCap("daily_cap_customer", CUSTOMER, 10_000, 9_000)
    assert caps.used(CUSTOMER, "usd") == 9_000
    assert caps.used(FLEET, "usd") == 9_000
    with session_scope() as session:
        assert session.get(CapReservation, "job-2:s1:r1") is None
    # Exactly up to the cap is allowed.
    assert caps.reserve("job-3:s1:r1", scopes(), "usd", 1_000) is None
    assert caps.used(CUSTOMER, "usd") == 10_000


def test_the_fleet_cap_spans_customers_and_a_refusal_undoes_the_customer_share(
    sqlite_db: Path,
) -> None:
    for n, requester in enumerate(("zendesk-user:1", "zendesk-user:2", "zendesk-user:3")):
        assert caps.reserve(f"job-{n}:s1:r1", scopes(requester), "usd", 8_000) is None

    over = caps.reserve("job-9:s1:r1", scopes("zendesk-user:4"), "usd", 2_000)

    assert over == caps.OverCap("daily_cap_fleet", FLEET, 25_000, 24_000)
    # The new customer's share, reserved before the fleet cap refused, was rolled back.
    assert caps.used("support_refund:stripe.refund:customer:zendesk-user:4", "usd") == 0
    assert caps.used(FLEET, "usd") == 24_000


def test_no_caps_reserve_nothing(sqlite_db: Path) -> None:
    assert caps.reserve("job-1:s1:r1", [], "usd", 10**9) is None
    with session_scope() as session:
        assert session.get(CapReservation, "job-1:s1:r1") is None
