"""Per-process clients: one per process and name, built lazily, so prefork children never
share a connection their parent opened (HTTP pools, Redis, the Celery publisher)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")

_clients: dict[tuple[str, int], Any] = {}
# Re-entrant: a client's factory may itself ask for another per-process client.
_clients_lock = threading.RLock()


def per_process(name: str, factory: Callable[[], T]) -> T:
    """One client per process and name, built lazily so prefork children never share one."""
    key = (name, os.getpid())
    with _clients_lock:
        if key not in _clients:
            _clients[key] = factory()
        return cast(T, _clients[key])


def reset_clients() -> None:
    """Forget every client (tests change the downstream URLs between runs)."""
    with _clients_lock:
        for client in _clients.values():
            close = getattr(client, "close", None)
            if callable(close):
                close()
        _clients.clear()
