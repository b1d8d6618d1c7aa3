"""Daily model spend budgets per workflow, reserved before a call and settled after.

A call reserves its worst case (the prompt's size and the tier's output cap at the model's
prices) with one conditional UPDATE, so concurrent workers cannot overspend; afterwards
the reservation is corrected to what the call really cost. Amounts are integer millionths
of a USD, so sums are exact on every database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import insert, select, true, update
from sqlalchemy.exc import IntegrityError

from app.db import session_scope
from app.errors import EscalationRequired
from app.models import ModelSpend, utcnow


def to_micros(usd: Decimal) -> int:
    """USD to whole millionths, rounded up (a reservation never under-counts)."""
    return int((usd * 1_000_000).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Reservation:
    """A reserved amount against one scope's budget on one day."""

    scope: str
    day: date
    micros: int


def reserve(scope: str, limit_usd: Decimal | None, usd: Decimal) -> Reservation:
    """Reserve `usd` of today's budget for `scope`; EscalationRequired when it would not fit."""
    day = utcnow().date()
    micros = to_micros(usd)
    with session_scope() as session:
        fits = (
            ModelSpend.micros + micros <= to_micros(limit_usd) if limit_usd is not None else true()
        )
        done = session.execute(
            update(ModelSpend)
            .where(ModelSpend.scope == scope, ModelSpend.day == day, fits)
            .values(micros=ModelSpend.micros + micros)
        ).rowcount
        if not done:
            exists = session.scalar(
                select(ModelSpend.micros).where(ModelSpend.scope == scope, ModelSpend.day == day)
            )
            if exists is None and (limit_usd is None or micros <= to_micros(limit_usd)):
                try:
                    with session.begin_nested():
                        session.execute(
                            insert(ModelSpend).values(scope=scope, day=day, micros=micros)
                        )
                    done = 1
                except IntegrityError:
                    # Another worker opened the day first: take the conditional path again.
                    done = session.execute(
                        update(ModelSpend)
                        .where(ModelSpend.scope == scope, ModelSpend.day == day, fits)
                        .values(micros=ModelSpend.micros + micros)
                    ).rowcount
        session.commit()
    if not done:
        raise EscalationRequired(
            "budget_exceeded",
            f"the daily model budget of {limit_usd} USD for {scope} is spent "
            f"(this call could cost up to {usd:.6f} USD)",
            {"budget": f"budgets.daily_usd.{scope}", "limit_usd": str(limit_usd), "day": str(day)},
        )
    return Reservation(scope, day, micros)


def settle(reservation: Reservation, actual_usd: Decimal) -> None:
    """Give back what the call did not use of its reservation."""
    unused = reservation.micros - to_micros(actual_usd)
    if unused == 0:
        return
    with session_scope() as session:
        session.execute(
            update(ModelSpend)
            .where(ModelSpend.scope == reservation.scope, ModelSpend.day == reservation.day)
            .values(micros=ModelSpend.micros - unused)
        )
        session.commit()


def spent(scope: str, day: date | None = None) -> Decimal:
    """What `scope` has spent (and holds reserved) on `day` (today by default), USD."""
    with session_scope() as session:
        micros = session.scalar(
            select(ModelSpend.micros).where(
                ModelSpend.scope == scope, ModelSpend.day == (day or utcnow().date())
            )
        )
    return Decimal(micros or 0) / Decimal(1_000_000)
