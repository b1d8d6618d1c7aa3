"""A circuit breaker per downstream system, shared by the whole fleet through Redis.

Written here rather than with pybreaker: pybreaker counts consecutive failures and, when its
Redis storage cannot be reached, lets calls through; opsgate needs a failure *rate* over a
time window with a minimum number of calls, a bounded number of half-open probes, and writes
that fail closed when Redis is down. Both transitions run as Lua scripts, so every worker
process sees one state and two processes cannot both decide.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from app.core import broker
from app.core.clients import per_process
from app.errors import CircuitOpen
from app.settings import get_settings

log = structlog.get_logger(__name__)

PREFIX = "opsgate:breaker:"

# A Lua function, so that a caller's own script can run the same check in its round trip
# (app/llm/admission.py: breaker, response cache and budget in one).
# state_key, probes_key, now (ms), max_probes, probe_gap (ms) -> {allowed, retry_at_ms, probe}.
ALLOW_LUA = """
local function breaker_allow(state_key, probes_key, now, max_probes, gap)
  local state = redis.call('HGET', state_key, 'state')
  if not state then return {1, 0, 0} end
  if state == 'open' then
    local untl = tonumber(redis.call('HGET', state_key, 'until'))
    if now < untl then return {0, untl, 0} end
    redis.call('HSET', state_key, 'state', 'half_open')
    redis.call('DEL', probes_key)
  end
  local n = redis.call('INCR', probes_key)
  redis.call('PEXPIRE', probes_key, gap)
  if n <= max_probes then return {1, 0, 1} end
  return {0, now + gap, 0}
end
"""

# KEYS: state, probes. ARGV: now, max_probes, probe_gap. Returns {allowed, retry_at_ms, probe}.
_ALLOW = (
    ALLOW_LUA
    + "return breaker_allow(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), "
    + "tonumber(ARGV[3]))\n"
)

# A Lua function, so that a caller's own script can count a call in its round trip
# (app/llm/admission.py: the count and the response cache's store in one).
# state_key, probes_key, window_key, now (ms), ok (1/0), bucket_ms, buckets, min_calls,
# failure_rate, open_ms -> the state after recording.
#
# The window is one hash: a ring of `buckets` one-bucket counters (fields c<slot>, f<slot>,
# slot = bucket number mod buckets), the newest bucket counted (`head`) and the running sums
# of the ring (`calls`, `failures`). A record adds to its bucket and to the sums; when time
# moves past `head`, the buckets that left the window are taken off the sums as their slots
# are reused (one HMGET and one HDEL for all of them). So a record reads no more than the
# buckets that expired since the last one: O(1) per call once time has moved on (the sum of
# 30 buckets was 30 HMGETs per call, most of a job's Redis commands). A record stamped before
# the window of `head` (another worker's clock behind) counts in `head`'s bucket: the call
# has just finished, whatever its clock says.
RECORD_LUA = """
local function breaker_record(state_key, probes_key, window, now, ok, bucket_ms, buckets,
                              min_calls, failure_rate, open_ms)
  local state = redis.call('HGET', state_key, 'state')
  if state == 'half_open' then
    if ok == 1 then
      redis.call('DEL', state_key, probes_key, window)
      return 'closed'
    end
    redis.call('HSET', state_key, 'state', 'open', 'until', now + open_ms)
    return 'open'
  end
  if state == 'open' then return 'open' end
  local bucket = math.floor(now / bucket_ms)
  local sums = redis.call('HMGET', window, 'head', 'calls', 'failures')
  local head = tonumber(sums[1])
  local calls, failures = tonumber(sums[2]) or 0, tonumber(sums[3]) or 0
  if head == nil or bucket - head >= buckets then
    -- Nothing counted, or every counted bucket has left the window: start afresh.
    if head ~= nil then redis.call('DEL', window) end
    head, calls, failures = bucket, 0, 0
  elseif bucket > head then
    local gone = {}
    for b = head + 1, bucket do
      local slot = b % buckets
      gone[#gone + 1] = 'c' .. slot
      gone[#gone + 1] = 'f' .. slot
    end
    local counts = redis.call('HMGET', window, unpack(gone))
    for i = 1, #gone, 2 do
      calls = calls - (tonumber(counts[i]) or 0)
      failures = failures - (tonumber(counts[i + 1]) or 0)
    end
    redis.call('HDEL', window, unpack(gone))
    head = bucket
  elseif head - bucket >= buckets then
    bucket = head
  end
  local slot = bucket % buckets
  calls = calls + 1
  redis.call('HINCRBY', window, 'c' .. slot, 1)
  if ok == 0 then
    failures = failures + 1
    redis.call('HINCRBY', window, 'f' .. slot, 1)
  end
  redis.call('HSET', window, 'head', head, 'calls', calls, 'failures', failures)
  redis.call('PEXPIRE', window, bucket_ms * (buckets + 1))
  if calls >= min_calls and failures / calls >= failure_rate then
    redis.call('HSET', state_key, 'state', 'open', 'until', now + open_ms)
    return 'open'
  end
  return 'closed'
end
"""

# KEYS: state, probes, window. ARGV: now, ok, bucket_ms, buckets, min_calls,
# failure_rate, open_ms. Returns the state after recording.
_RECORD = (
    RECORD_LUA
    + "return breaker_record(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), "
    + "tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), "
    + "tonumber(ARGV[7]))\n"
)


@dataclass(frozen=True)
class BreakerSettings:
    """How a breaker judges a system."""

    window_seconds: float
    min_calls: int
    failure_rate: float
    open_seconds: float
    half_open_probes: int


def _settings() -> BreakerSettings:
    s = get_settings()
    return BreakerSettings(
        s.breaker_window,
        s.breaker_min_calls,
        s.breaker_failure_rate,
        s.breaker_open_seconds,
        s.breaker_probes,
    )


def _script(source: str) -> Any:
    """The script registered on this process's client: EVALSHA, loading it once if needed."""

    return per_process(
        f"breaker-script:{hash(source)}", lambda: broker.client().register_script(source)
    )


def _keys(system: str) -> tuple[str, str, str]:
    base = f"{PREFIX}{system}:"
    # The window's name keeps the `win:` prefix of the per-bucket keys it replaced, so that
    # `reset` (and an operator's SCAN) finds both during an upgrade.
    return base + "state", base + "probes", base + "win:ring"


def _now_ms() -> int:
    return int(time.time() * 1000)


def allow_call(system: str) -> tuple[list[str], list[int]]:
    """The keys and arguments of `breaker_allow` (ALLOW_LUA) for a call to `system` now."""
    cfg = _settings()
    state, probes, _ = _keys(system)
    gap_ms = int(cfg.open_seconds * 1000 / max(1, cfg.half_open_probes))
    return [state, probes], [_now_ms(), cfg.half_open_probes, gap_ms]


def before_call(system: str, *, write: bool) -> None:
    """Raise CircuitOpen unless a call to `system` may go out now.

    If Redis cannot be reached, writes fail closed (the job parks and tries again) while
    reads go ahead: a read cannot change the world, a write the breaker cannot see might.
    """
    keys, args = allow_call(system)
    try:
        allowed, retry_at, _probe = _script(_ALLOW)(keys=keys, args=args)
    except (redis.RedisError, OSError) as exc:
        if write:
            raise CircuitOpen(
                system, time.time() + 5, "redis unreachable; writes fail closed"
            ) from exc
        return
    if not allowed:
        raise CircuitOpen(system, int(retry_at) / 1000)


def record_call(system: str, *, ok: bool) -> tuple[list[str], list[Any]]:
    """The keys and arguments of `breaker_record` (RECORD_LUA) for a finished call now."""
    cfg = _settings()
    state, probes, window = _keys(system)
    bucket_ms = 1000
    buckets = max(1, int(cfg.window_seconds))
    args: list[Any] = [
        _now_ms(),
        1 if ok else 0,
        bucket_ms,
        buckets,
        cfg.min_calls,
        cfg.failure_rate,
        int(cfg.open_seconds * 1000),
    ]
    return [state, probes, window], args


def record(system: str, *, ok: bool) -> str | None:
    """Count a finished call; returns the breaker's state afterwards (None if unknown)."""
    keys, args = record_call(system, ok=ok)
    try:
        result = _script(_RECORD)(keys=keys, args=args)
    except (redis.RedisError, OSError) as exc:
        log.warning("breaker.record_failed", system=system, error=str(exc))
        return None
    return recorded(system, ok=ok, result=result)


def recorded(system: str, *, ok: bool, result: Any) -> str:
    """The state `breaker_record` answered (logged when a failure opened the breaker)."""
    outcome = result.decode() if isinstance(result, bytes) else str(result)
    if outcome == "open" and not ok:
        log.warning("breaker.open", system=system)
    return outcome


def status(system: str) -> dict[str, str]:
    """The breaker's state for operators: closed, open (until when) or half_open."""
    raw: dict[bytes, bytes] = broker.client().hgetall(_keys(system)[0])  # type: ignore[assignment]
    decoded = {k.decode(): v.decode() for k, v in raw.items()}
    return decoded or {"state": "closed"}


def reset(system: str) -> None:
    """Close the breaker by hand (operators, tests)."""
    state, probes, window = _keys(system)
    client = broker.client()
    client.delete(state, probes, window)
    # Per-bucket keys written before the window became one hash (they expire by themselves
    # within a window; a reset should not wait for that).
    for key in client.scan_iter(f"{PREFIX}{system}:win:*"):
        client.delete(key)
