"""Daily caps on what autonomous actions spend, per customer and for the fleet.

Reserved in the database right before the call, in one short transaction: a conditional
UPDATE per cap (`amount + x <= cap`), so two concurrent jobs cannot both spend the last of
a cap (PostgreSQL's row lock, SQLite's BEGIN IMMEDIATE), and a reservation row keyed by the
step's idempotency key, so a retried step never reserves twice. A reservation stays when a
call then fails: the caps over-count, never under-count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, insert, update
from sqlalchemy.exc import IntegrityError

from app.controls.policy import DailyCaps
from app.core.db import session_scope
from app.models import CapReservation, CapUsage, utcnow


@dataclass(frozen=True)
class OverCap:
    """Which cap a call would exceed."""

    rule: str
    scope: str
    cap: int
    used: int


def scopes_for(
    workflow: str, tool: str, requester: str, caps: DailyCaps, currency: str
) -> list[tuple[str, str, int]]:
    """(rule, scope, cap) for every cap on this call's currency."""
    found = []
    if currency in caps.per_customer:
        found.append(
            (
                "daily_cap_customer",
                f"{workflow}:{tool}:customer:{requester}",
                caps.per_customer[currency],
            )
        )
    if currency in caps.fleet:
        found.append(("daily_cap_fleet", f"{workflow}:{tool}:fleet", caps.fleet[currency]))
    return found


def reserve(
    step_key: str, caps: list[tuple[str, str, int]], currency: str, amount: int
) -> OverCap | None:
    """Reserve `amount` against every cap at once; the first cap it would exceed, or None."""
    if not caps:
        return None
    day = utcnow().date()
    with session_scope() as session:
        if session.get(CapReservation, step_key) is not None:
            return None  # this step already holds its share
        for rule, scope, cap in caps:
            try:
                with session.begin_nested():
                    session.execute(
                        insert(CapUsage).values(scope=scope, day=day, currency=currency, amount=0)
                    )
            except IntegrityError:
                pass  # the day's row exists
            done: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(CapUsage)
                .where(
                    CapUsage.scope == scope,
                    CapUsage.day == day,
                    CapUsage.currency == currency,
                    CapUsage.amount + amount <= cap,
                )
                .values(amount=CapUsage.amount + amount)
            )
            if not done.rowcount:
                used = session.get(CapUsage, (scope, day, currency))
                session.rollback()
                return OverCap(rule, scope, cap, used.amount if used else 0)
        session.add(
            CapReservation(
                step_key=step_key,
                scopes=[s for _, s, _ in caps],
                day=day,
                currency=currency,
                amount=amount,
            )
        )
        session.commit()
    return None


def used(scope: str, currency: str) -> int:
    """What a cap's scope has used today (minor units)."""
    with session_scope() as session:
        row = session.get(CapUsage, (scope, utcnow().date(), currency))
        return row.amount if row else 0
