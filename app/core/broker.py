"""Where Redis is: the configured URL, or the embedded server under ./var/."""

from __future__ import annotations

import redis

from app.core import redis_server
from app.core.clients import per_process
from app.errors import ServiceUnavailable
from app.settings import Settings, get_settings


def redis_url(settings: Settings | None = None) -> str:
    """The redis-py URL opsgate uses (configured, or the embedded server's socket)."""
    settings = settings or get_settings()
    return settings.redis_url or redis_server.embedded_url(settings)


def celery_broker_url(settings: Settings | None = None) -> str:
    """The same server, spelled as kombu wants it (unix sockets are redis+socket://)."""
    url = redis_url(settings)
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


def ensure_redis(settings: Settings | None = None) -> bool:
    """Start the embedded server when no URL is configured; then check Redis answers."""
    settings = settings or get_settings()
    started = False if settings.redis_url else redis_server.ensure_running(settings)
    check_redis(settings)
    return started


def client() -> redis.Redis:
    """This process's Redis client."""
    return per_process(
        "redis",
        lambda: redis.Redis.from_url(redis_url(), socket_timeout=5, socket_connect_timeout=3),
    )


def check_redis(settings: Settings | None = None) -> None:
    """Raise ServiceUnavailable with a clear line if Redis does not answer."""
    url = redis_url(settings)
    try:
        redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3).ping()
    except (redis.RedisError, OSError) as exc:
        raise ServiceUnavailable(f"redis unreachable at {_hide(url)}: {exc}") from exc


def describe_url(settings: Settings | None = None) -> str:
    """The Redis URL in use, its password masked, for messages."""
    return _hide(redis_url(settings))


def _hide(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
