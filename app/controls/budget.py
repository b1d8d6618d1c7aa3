"""Daily model spend budgets per workflow: reserved before a call, settled after.

A call reserves its worst case (the prompt's size and the tier's output cap at the model's
prices) with one Lua script in Redis, so concurrent workers of the whole fleet cannot
overspend and the hot path costs one round trip, not a database transaction. The durable
ledger is `model_spend` in the database: the real cost of each call is added there in the
plan stage's own commit, together with the call's record; after that commit the Redis
counter gives back the unused part of the reservation. If Redis loses the counter (a
restart), the next reservation rebuilds it from the ledger. Amounts are integer millionths
of a USD, so sums are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal
from typing import Any

import redis
import structlog
from sqlalchemy import CursorResult, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from app.core import broker
from app.core.clients import per_process
from app.core.db import session_scope
from app.errors import EscalationRequired, RetryableError
from app.models import ModelSpend, utcnow

log = structlog.get_logger(__name__)
PREFIX = "opsgate:budget:"
_TTL_SECONDS = 3 * 86400

# A Lua function, so that a caller's own script can reserve in its round trip
# (app/llm/admission.py). key, micros, limit (-1: none) -> the new total, -1 when the counter
# must first be loaded from the ledger, -2 when the call does not fit.
RESERVE_LUA = """
local function budget_reserve(key, add, limit)
  local current = redis.call('GET', key)
  if not current then return -1 end
  if limit >= 0 and tonumber(current) + add > limit then return -2 end
  return redis.call('INCRBY', key, add)
end
"""

# KEYS: the day's counter. ARGV: micros, limit (-1: none).
_RESERVE = RESERVE_LUA + "return budget_reserve(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"


def to_micros(usd: Decimal) -> int:
    """USD to whole millionths, rounded up (a reservation never under-counts)."""
    return int((usd * 1_000_000).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Reservation:
    """A reserved amount against one scope's budget on one day."""

    scope: str
    day: date
    micros: int


def _key(scope: str, day: date) -> str:
    return f"{PREFIX}{scope}:{day.isoformat()}"


@dataclass(frozen=True)
class Ask:
    """One reservation to make: the counter, the amount and the limit, in micros."""

    scope: str
    day: date
    key: str
    micros: int
    limit: int
    limit_usd: Decimal | None
    usd: Decimal


def ask(scope: str, limit_usd: Decimal | None, usd: Decimal) -> Ask:
    """The reservation of `usd` of today's budget for `scope`, for `budget_reserve`."""
    day = utcnow().date()
    limit = to_micros(limit_usd) if limit_usd is not None else -1
    return Ask(scope, day, _key(scope, day), to_micros(usd), limit, limit_usd, usd)


def reserve(scope: str, limit_usd: Decimal | None, usd: Decimal) -> Reservation:
    """Reserve `usd` of today's budget for `scope`; EscalationRequired when it would not fit."""
    return reserve_asked(ask(scope, limit_usd, usd))


def reserve_asked(asked: Ask) -> Reservation:
    """Make the reservation `asked` (loading the counter from the ledger when Redis has none)."""
    script = per_process("budget-script", lambda: broker.client().register_script(_RESERVE))
    try:
        total = int(script(keys=[asked.key], args=[asked.micros, asked.limit]))
        if total == -1:
            # Load the day's committed spend from the ledger (NX: a racing worker's load wins).
            loaded = ledger_micros(asked.scope, asked.day)
            broker.client().set(asked.key, loaded, nx=True, ex=_TTL_SECONDS)
            total = int(script(keys=[asked.key], args=[asked.micros, asked.limit]))
    except (redis.RedisError, OSError) as exc:
        # Spend control fails closed: no reservation, no call.
        raise RetryableError(f"budget counter unreachable: {exc}") from exc
    return reserved(asked, total)


def reserved(asked: Ask, total: int) -> Reservation:
    """The reservation `budget_reserve` answered with `total` (not -1: the caller loads first);
    EscalationRequired when the call did not fit."""
    if total == -2:
        raise EscalationRequired(
            "budget_exceeded",
            f"the daily model budget of {asked.limit_usd} USD for {asked.scope} is spent "
            f"(this call could cost up to {asked.usd:.6f} USD)",
            {
                "budget": f"budgets.daily_usd.{asked.scope}",
                "limit_usd": str(asked.limit_usd),
                "day": str(asked.day),
            },
        )
    return Reservation(asked.scope, asked.day, asked.micros)


def settle_in(session: Session, reservation: Reservation, actual_usd: Decimal) -> None:
    """Add the call's real cost to the ledger in the caller's transaction; once it commits,
    give the unused part of the reservation back to the counter.

    A worker that dies between the call and that commit leaves its worst case counted in
    Redis: budgets over-count, never under-count.
    """
    actual = to_micros(actual_usd)
    if actual:
        session.info.setdefault(_LEDGER, []).append((reservation.scope, reservation.day, actual))
    unused = reservation.micros - actual
    if unused:
        event.listen(session, "after_commit", lambda _s: _give_back(reservation, unused), once=True)


# session.info key: ledger additions of the transaction, applied as it commits.
_LEDGER = "opsgate.ledger"


def _apply_ledger(session: Session) -> None:
    """Right before the commit: the transaction's other writes first, then the ledger rows.

    One ledger row per workflow and UTC day is what every model call of the fleet adds to: its
    row lock must be held for the commit only, not through the rest of a stage's transaction
    (measured by bench.saturation's production profile: stage commits queued on it for 1-3 s).
    """
    pending: list[tuple[str, date, int]] = session.info.pop(_LEDGER, [])
    if not pending:
        return
    session.flush()
    for scope, day, micros in pending:
        _add_to_ledger(session, scope, day, micros)


def _forget_ledger(session: Session, previous: SessionTransaction) -> None:
    # The whole transaction rolled back (a savepoint's rollback keeps what was added before it).
    if previous.parent is None:
        session.info.pop(_LEDGER, None)


event.listen(Session, "before_commit", _apply_ledger)
event.listen(Session, "after_soft_rollback", _forget_ledger)


def _add_to_ledger(session: Session, scope: str, day: date, micros: int) -> None:
    added: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(ModelSpend)
        .where(ModelSpend.scope == scope, ModelSpend.day == day)
        .values(micros=ModelSpend.micros + micros)
    )
    if added.rowcount:
        return
    try:
        with session.begin_nested():
            session.execute(insert(ModelSpend).values(scope=scope, day=day, micros=micros))
    except IntegrityError:
        session.execute(
            update(ModelSpend)
            .where(ModelSpend.scope == scope, ModelSpend.day == day)
            .values(micros=ModelSpend.micros + micros)
        )


def _give_back(reservation: Reservation, micros: int) -> None:
    try:
        broker.client().decrby(_key(reservation.scope, reservation.day), micros)
    except (redis.RedisError, OSError) as exc:
        log.warning("budget.give_back_failed", scope=reservation.scope, error=str(exc))


def settle(reservation: Reservation, actual_usd: Decimal) -> None:
    """settle_in, in a transaction of its own."""
    with session_scope() as session:
        settle_in(session, reservation, actual_usd)
        session.commit()


def ledger_micros(scope: str, day: date) -> int:
    """The committed spend of `scope` on `day` in the ledger, millionths of a USD."""
    with session_scope() as session:
        micros = session.scalar(
            select(ModelSpend.micros).where(ModelSpend.scope == scope, ModelSpend.day == day)
        )
    return int(micros or 0)


def spent(scope: str, day: date | None = None) -> Decimal:
    """What `scope` has spent on `day` (today by default) by the ledger, USD."""
    return Decimal(ledger_micros(scope, day or utcnow().date())) / Decimal(1_000_000)


def held(scope: str, day: date | None = None) -> Decimal:
    """Spent plus reserved by calls in flight, as the counter holds it, USD."""
    raw = broker.client().get(_key(scope, day or utcnow().date()))
    return Decimal(int(raw or 0)) / Decimal(1_000_000)
