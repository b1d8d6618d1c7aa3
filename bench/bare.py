"""The bare baseline: a Celery app whose chain of no-op tasks has the pipeline's hop count.

Run by bench/pipeline.py as `python -m celery -A bench.bare worker ...` with BENCH_BROKER_URL
set. The delivery settings (serializer, acks_late, prefetch, events, visibility timeout, ...)
are copied from opsgate's own Celery app, so the only difference left is the work per hop.
Each hop goes to a queue named after the pipeline stage it stands for, so the worker polls
several queues as the opsgate worker does. The last hop appends its finish time to a Redis
list, whose length counts finished chains.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from celery import Celery, chain
from kombu import Queue

BROKER_ENV = "BENCH_BROKER_URL"
DONE_KEY = "bench:bare:done"
# The pipeline's six hops, by the stage queue each runs on:
# plan, verify_proposal, execute, verify_outcome, execute, verify_outcome.
HOP_QUEUES = (
    "bare_plan",
    "bare_verify",
    "bare_execute",
    "bare_verify",
    "bare_execute",
    "bare_verify",
)
QUEUES = ("bare_plan", "bare_verify", "bare_execute")

# Delivery settings that make a hop cost what it costs in opsgate's fleet.
MIRRORED = (
    "task_serializer",
    "accept_content",
    "result_serializer",
    "task_ignore_result",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "task_time_limit",
    "worker_prefetch_multiplier",
    "worker_cancel_long_running_tasks_on_connection_loss",
    "worker_send_task_events",
    "task_send_sent_event",
    "broker_transport_options",
    "task_publish_retry_policy",
    "broker_connection_retry_on_startup",
)


def broker_url() -> str:
    """The broker the benchmark runs on (the same Redis URL the opsgate fleet uses)."""
    return os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/14")


def opsgate_settings() -> dict[str, Any]:
    """The delivery settings of opsgate's Celery app (reads settings, opens no connection)."""
    from app.celery_app import celery_app as opsgate

    return {key: opsgate.conf[key] for key in MIRRORED}


def bare_app(name: str, broker: str, queues: tuple[str, ...]) -> Celery:
    """A bare Celery app on `broker` with opsgate's delivery settings (shared by the benches)."""
    celery = Celery(name)
    celery.conf.update(opsgate_settings())
    celery.conf.update(
        broker_url=broker,
        task_queues=[Queue(q) for q in queues],
        task_default_queue=queues[0],
    )
    return celery


def make_app() -> Celery:
    """The bare app on the benchmark's broker with opsgate's delivery settings."""
    return bare_app("bench_bare", broker_url(), QUEUES)


app = make_app()

_clients: dict[tuple[int, str], redis.Redis] = {}
_lock = threading.Lock()


def redis_for(url: str) -> redis.Redis:
    """This process's Redis client for `url` (made after fork)."""
    key = (os.getpid(), url)
    with _lock:
        if key not in _clients:
            _clients[key] = redis.Redis.from_url(url)
        return _clients[key]


def _redis() -> redis.Redis:
    return redis_for(broker_url())


@app.task(name="bench.hop")
def hop(index: int) -> None:
    """A no-op hop."""
    return None


@app.task(name="bench.done")
def done(index: int) -> None:
    """The last hop: record that one more chain finished, and when."""
    _redis().rpush(DONE_KEY, repr(time.time()))


def bare_chain(n: int) -> Any:
    """The chain of len(HOP_QUEUES) tasks for the n-th submission."""
    sigs = [hop.si(n).set(queue=q) for q in HOP_QUEUES[:-1]]
    sigs.append(done.si(n).set(queue=HOP_QUEUES[-1]))
    return chain(*sigs)
