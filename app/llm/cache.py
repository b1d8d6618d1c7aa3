"""The model response cache in Redis: a duplicate request costs no second model call.

Keyed by prompt version, model and a hash of the redacted messages (what the vendor would
see), so a changed prompt, another model or a different ticket is always a miss. The cache
is an optimisation: when Redis cannot be reached, calls go to the model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis
import structlog

from app.core import broker

log = structlog.get_logger(__name__)
PREFIX = "opsgate:llm:cache:"


def key(prompt_version: str, model: str, messages: list[dict[str, Any]]) -> str:
    """The cache key of one request."""
    body = json.dumps(messages, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{prompt_version}\n{model}\n{body}".encode()).hexdigest()
    return PREFIX + digest


def get(cache_key: str) -> dict[str, Any] | None:
    """The stored answer ({content, input_tokens, output_tokens}), or None."""
    try:
        raw = broker.client().get(cache_key)
    except (redis.RedisError, OSError) as exc:
        log.warning("llm.cache_unavailable", error=str(exc))
        return None
    if raw is None:
        return None
    value: dict[str, Any] = json.loads(raw)
    return value


def put(cache_key: str, answer: dict[str, Any], ttl_seconds: int) -> None:
    """Store a valid answer for `ttl_seconds` (0 turns the cache off)."""
    if ttl_seconds <= 0:
        return
    try:
        broker.client().set(cache_key, json.dumps(answer), ex=ttl_seconds)
    except (redis.RedisError, OSError) as exc:
        log.warning("llm.cache_unavailable", error=str(exc))
