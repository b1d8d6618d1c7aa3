"""Before a model call, in one Redis round trip: the breaker, the response cache, the budget.

Three separate round trips (the fleet-wide breaker's check, the cache lookup, the budget
reservation) were a third of what opsgate added to a model call. One Lua script runs the
breaker's own check (`breaker.ALLOW_LUA`), then the cache lookup, then the budget's own
reservation (`budget.RESERVE_LUA`), each only if the one before let the call through, so
the semantics are those of the three calls made in turn:
- an open breaker refuses before the cache is read (nothing is reserved);
- a cache hit reserves nothing;
- the reservation stays atomic (the script is), and when Redis has no counter for the day
  the caller loads it from the ledger and reserves again, as `budget.reserve` does.

When Redis cannot be reached, a model call is a read for the breaker (it goes ahead), the
cache is a miss, and the budget fails closed: RetryableError, no call.

Both go over the calling thread's own connection (app/core/redis_line.py). After the call,
the breaker's count is sent as soon as the answer arrives and read once the answer is judged
(`count`, `settle`), and the cache store is sent without waiting for its answer (`settle`
says why that is safe); the thread's next admission, on the same connection, runs after both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from app.controls import breaker, budget
from app.core.redis_line import Script, lines
from app.errors import CircuitOpen, RetryableError

log = structlog.get_logger(__name__)

# KEYS: breaker state, breaker probes, cache key, budget counter.
# ARGV: check breaker (1/0), now ms, max probes, probe gap ms, micros, limit.
# Returns {'open', retry_at_ms} | {'hit', cached answer} | {'reserved', budget_reserve's total}.
_ADMIT = Script(
    breaker.ALLOW_LUA
    + budget.RESERVE_LUA
    + """
if ARGV[1] == '1' then
  local verdict = breaker_allow(KEYS[1], KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]),
                                tonumber(ARGV[4]))
  if verdict[1] == 0 then return {'open', verdict[2]} end
end
local hit = redis.call('GET', KEYS[3])
if hit then return {'hit', hit} end
return {'reserved', budget_reserve(KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6]))}
"""
)


@dataclass(frozen=True)
class Admitted:
    """The cached answer ({content, input_tokens, output_tokens}), or the reservation made."""

    hit: dict[str, Any] | None = None
    reservation: budget.Reservation | None = None


def admit(system: str, *, check_breaker: bool, cache_key: str, asked: budget.Ask) -> Admitted:
    """Let one call to `system` go out: CircuitOpen when its breaker refuses (only checked
    with `check_breaker`), the cached answer when there is one, else `asked` reserved
    (EscalationRequired when it does not fit)."""
    keys, args = breaker.allow_call(system)
    try:
        kind, value = (
            lines()
            .line()
            .call(
                _ADMIT,
                [*keys, cache_key, asked.key],
                [1 if check_breaker else 0, *args, asked.micros, asked.limit],
            )
        )
    except (redis.RedisError, OSError) as exc:
        # Breaker: a model call is a read, it goes ahead. Cache: a miss. Budget: fails closed.
        log.warning("llm.cache_unavailable", error=str(exc))
        raise RetryableError(f"budget counter unreachable: {exc}") from exc
    if kind == b"open":
        raise CircuitOpen(system, int(value) / 1000)
    if kind == b"hit":
        cached: dict[str, Any] = json.loads(value)
        return Admitted(hit=cached)
    if int(value) == -1:
        # No counter for the day in Redis (a restart, a new day): load it from the ledger.
        return Admitted(reservation=budget.reserve_asked(asked))
    return Admitted(reservation=budget.reserved(asked, int(value)))


# KEYS: breaker state, probes, window. ARGV: breaker_record's seven arguments.
_COUNT = Script(
    breaker.RECORD_LUA
    + """
return breaker_record(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]),
                      tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
                      tonumber(ARGV[6]), tonumber(ARGV[7]))
"""
)

# KEYS: cache key. ARGV: the answer, its TTL in seconds.
_STORE = Script("return redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))")


def _lost(system: str) -> Callable[[Exception], None]:
    def failed(exc: Exception) -> None:
        # As breaker.record and cache.put: the count or the store is lost, the call is not.
        log.warning("breaker.record_failed", system=system, error=str(exc))

    return failed


def count(system: str) -> None:
    """As soon as a call to `system` is answered: count it as a success on its breaker (any
    answer is one: invalid, refused or usable), sent without waiting; `settle` reads the
    answer once the answer is judged, so the round trip runs while it is."""
    keys, args = breaker.record_call(system, ok=True)

    def answered(result: Any) -> None:
        breaker.recorded(system, ok=True, result=result)

    try:
        lines().line().send(_COUNT, keys, args, on_answer=answered, on_error=_lost(system))
    except (redis.RedisError, OSError) as exc:
        _lost(system)(exc)


def settle(system: str, *, cache_key: str, answer: dict[str, Any] | None, ttl_seconds: int) -> None:
    """Once an answer is judged: store a usable `answer` in the cache for `ttl_seconds`, sent
    without waiting, and read the breaker's count that `count` sent.

    Not waiting for the store's answer loses or reorders nothing a guarantee needs. The
    store guards nothing: the budget's reservation was made before the call (atomic, fail
    closed) and is settled by the stage's own commit, and the breaker's count is read here,
    so that when a call returns its count is in Redis for the whole fleet (and a half-open
    breaker closed by a probe's success is closed). The store is lost only when the
    connection breaks before Redis has read it, which the synchronous call lost too (logged
    then as now, when the thread's next call finds the connection broken); a script Redis no
    longer knows is sent again whole, not dropped. As for order: Redis runs one connection's
    commands in order, so this thread's next admission, on the same connection, finds the
    entry (a repeated request is a hit); another worker may miss it for the microseconds the
    store takes to arrive, as it could before when it asked a moment earlier.
    """
    line = lines().line()
    store = answer is not None and ttl_seconds > 0
    if store:
        try:
            line.send(
                _STORE,
                [cache_key],
                [json.dumps(answer), ttl_seconds],
                on_answer=lambda _: None,
                on_error=_lost(system),
            )
        except (redis.RedisError, OSError) as exc:
            _lost(system)(exc)
            store = False
    # The count was sent when the answer came; its answer has arrived by now, or soon.
    line.collect(keep=1 if store else 0)
