"""Rate limits per tool, shared by the whole fleet through Redis (fixed one-second windows).

A call over the limit does not wait in a worker thread: it raises RateLimited, and the job
parks with a `resume_at` at the start of the next window (waits live in the database).
"""

from __future__ import annotations

import time

import redis

from app.core import broker
from app.errors import RateLimited

PREFIX = "opsgate:rate:"


def acquire(tool: str, per_second: int | None, *, write: bool) -> None:
    """Take one call from the tool's budget for this second, or raise RateLimited.

    Without Redis the limit cannot be counted: writes fail closed, reads go ahead.
    """
    if not per_second:
        return
    now = time.time()
    window = int(now)
    key = f"{PREFIX}{tool}:{window}"
    try:
        pipe = broker.client().pipeline()
        pipe.incr(key)
        pipe.expire(key, 5)
        used = int(pipe.execute()[0])
    except (redis.RedisError, OSError) as exc:
        if write:
            raise RateLimited(tool, now + 5, "redis unreachable; writes fail closed") from exc
        return
    if used > per_second:
        raise RateLimited(tool, window + 1, f"over {per_second} calls per second")
