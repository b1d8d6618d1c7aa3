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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from app.controls import breaker, budget
from app.core import broker
from app.core.clients import per_process
from app.errors import CircuitOpen, RetryableError

log = structlog.get_logger(__name__)

# KEYS: breaker state, breaker probes, cache key, budget counter.
# ARGV: check breaker (1/0), now ms, max probes, probe gap ms, micros, limit.
# Returns {'open', retry_at_ms} | {'hit', cached answer} | {'reserved', budget_reserve's total}.
_ADMIT = (
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
    script = per_process("llm-admission-script", lambda: broker.client().register_script(_ADMIT))
    try:
        kind, value = script(
            keys=[*keys, cache_key, asked.key],
            args=[1 if check_breaker else 0, *args, asked.micros, asked.limit],
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


# KEYS: breaker state, probes, window, cache key. ARGV: breaker_record's seven
# arguments, then the answer to store and its TTL in seconds (0: store nothing).
_SETTLE = (
    breaker.RECORD_LUA
    + """
local state = breaker_record(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]),
                             tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
                             tonumber(ARGV[6]), tonumber(ARGV[7]))
if tonumber(ARGV[9]) > 0 then redis.call('SET', KEYS[4], ARGV[8], 'EX', tonumber(ARGV[9])) end
return state
"""
)


def settle(system: str, *, cache_key: str, answer: dict[str, Any] | None, ttl_seconds: int) -> None:
    """After an answer is judged, in one round trip: count the call as a success on the
    breaker and, for a usable `answer`, store it in the cache for `ttl_seconds`."""
    keys, args = breaker.record_call(system, ok=True)
    store = answer is not None and ttl_seconds > 0
    script = per_process("llm-settle-script", lambda: broker.client().register_script(_SETTLE))
    try:
        result = script(
            keys=[*keys, cache_key],
            args=[*args, json.dumps(answer) if store else "", ttl_seconds if store else 0],
        )
    except (redis.RedisError, OSError) as exc:
        # As breaker.record and cache.put: the count and the store are lost, the call is not.
        log.warning("breaker.record_failed", system=system, error=str(exc))
        return
    breaker.recorded(system, ok=True, result=result)
