"""The gates at the call (app.controls.gates.AT_CALL) in one Redis round trip.

Asked one by one, the kill switch (HMGET), the rate limit (INCR + EXPIRE) and the breaker
(its Lua check) were three round trips before every downstream call, and the breaker's count
a fourth after it: a third of what the Redis client cost a worker per job. One Lua script
runs the three in the list's order, each only if the one before let the call through, so the
semantics are those of `gates.run(gates.AT_CALL, call)`:
- an engaged switch parks the call before it spends rate limit or a half-open probe;
- a spent rate limit parks it before the breaker is asked;
- the breaker's check is the breaker's own (`breaker.ALLOW_LUA`);
- the switch is read at the call, from Redis, with no cache: the fleet obeys at once.

The switches in config/killswitch.yaml are read first (no Redis needed). When Redis has lost
the runtime switches (no `_loaded` mark) the script stops before anything is spent; they are
rebuilt from the database and the script runs again, as `killswitch.engaged_scope` does.
When Redis cannot be reached, reads go ahead and writes fail closed, with the error of the
first gate that would have asked Redis (the kill switch for catalog tools, else the breaker).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from app.controls import breaker, killswitch, policy, ratelimit
from app.controls.gates import GateCall
from app.core import broker
from app.core.clients import per_process
from app.errors import CircuitOpen, KillSwitchEngaged, RateLimited

# How long a rate-limit window's counter lives (as app.controls.ratelimit).
_WINDOW_TTL = 5

# KEYS: kill switch hash, rate-limit counter, breaker state, breaker probes.
# ARGV: catalog (1/0), the three switch scopes, the loaded mark, calls per second (0: no
# limit), then breaker_allow's now (ms), max probes, probe gap (ms).
# Returns {'unloaded'} | {'killed', scope, who} | {'limited', used} | {'open', retry_at_ms}
# | {'ok'}.
_AT_CALL = (
    breaker.ALLOW_LUA
    + """
if ARGV[1] == '1' then
  local found = redis.call('HMGET', KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
  if not found[4] then return {'unloaded'} end
  for i = 1, 3 do
    if found[i] then return {'killed', ARGV[i + 1], found[i]} end
  end
  local per_second = tonumber(ARGV[6])
  if per_second > 0 then
    local used = redis.call('INCR', KEYS[2])
    redis.call('EXPIRE', KEYS[2], """
    + str(_WINDOW_TTL)
    + """)
    if used > per_second then return {'limited', used} end
  end
end
local verdict = breaker_allow(KEYS[3], KEYS[4], tonumber(ARGV[7]), tonumber(ARGV[8]),
                              tonumber(ARGV[9]))
if verdict[1] == 0 then return {'open', verdict[2]} end
return {'ok'}
"""
)


def _script() -> Any:
    return per_process("at-call-script", lambda: broker.client().register_script(_AT_CALL))


def check(call: GateCall) -> None:
    """Pass `call` through the gates at the call, or raise the first one's refusal
    (KillSwitchEngaged, RateLimited, CircuitOpen): the job parks."""
    if call.catalog:
        configured = killswitch.from_config()
        for scope in killswitch.scopes(call.workflow, call.tool):
            if scope in configured:
                raise KillSwitchEngaged(scope, "engaged by config/killswitch.yaml")
    per_second = (policy.rate_limit(call.tool) or 0) if call.catalog else 0
    now = time.time()
    window = int(now)
    breaker_keys, breaker_args = breaker.allow_call(call.system)
    keys = [killswitch.KEY, f"{ratelimit.PREFIX}{call.tool}:{window}", *breaker_keys]
    args = [
        1 if call.catalog else 0,
        *killswitch.scopes(call.workflow, call.tool),
        killswitch.LOADED,
        per_second,
        *breaker_args,
    ]
    try:
        verdict = _script()(keys=keys, args=args)
        if verdict[0] == b"unloaded":
            killswitch.rebuild()
            verdict = _script()(keys=keys, args=args)
    except (redis.RedisError, OSError) as exc:
        if not call.write:
            return
        if call.catalog:
            raise KillSwitchEngaged(
                "unknown", f"kill switch unreadable ({exc}); writes fail closed"
            ) from exc
        raise CircuitOpen(call.system, now + 5, "redis unreachable; writes fail closed") from exc
    kind = verdict[0]
    if kind == b"killed":
        who = json.loads(verdict[2])
        raise KillSwitchEngaged(verdict[1].decode(), f"engaged by {who.get('by', 'unknown')}")
    if kind == b"limited":
        raise RateLimited(call.tool, window + 1, f"over {per_second} calls per second")
    if kind == b"open":
        raise CircuitOpen(call.system, int(verdict[1]) / 1000)
