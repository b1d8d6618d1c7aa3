"""A process's sender of stage messages: one thread that publishes the messages of many
concurrent accepts (the API) or stage commits (a worker's threads) together, in one pipelined
Redis write.

Publishing each accept's message on its own costs a Celery `send_task` with its own Redis
round trip, and kombu's Redis transport builds a new `redis.Redis` client for every publish.
Here an accept hands its messages to this process's sender after its transaction committed;
the sender's thread takes every message waiting when it wakes and publishes them through one
kombu `Producer.batch()` (one client, one pipeline, one round trip), so under load a batch
carries many accepts' messages. Callers on the event loop await `Sender.send`, which costs
no threadpool hand-off: the thread resolves their futures with one loop wake-up per batch. A
thread that must not go on before its messages are out (a worker's stage after its commit,
the relay, the CLI) calls `Sender.send_blocking` (app.jobs.outbox), which waits a bounded time.

Nothing is lost when a send fails (Redis down, the process dies first): the job row keeps its
message due and the relay sends it after the grace period (app.jobs.outbox).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from celery import Celery
from kombu.exceptions import KombuError
from kombu.messaging import Producer
from redis.exceptions import RedisError

from app.core.clients import per_process
from app.jobs.celery_config import publisher
from app.jobs.lifecycle import Message

log = structlog.get_logger(__name__)

# A batch is at most this many messages (kombu's pipeline is flushed once per batch).
MAX_BATCH = 500
# How long a worker thread waits for its messages to go out; past it the message stays due on
# its job row and the relay sends it (a send retried by Celery's policy takes well under it).
BLOCKING_WAIT = 30.0


@dataclass(frozen=True)
class _Waiting:
    """Messages handed to the sender, the context they were handed over in (the request's or
    the task's trace, so each message carries it), and the future to resolve once sent: on an
    event loop (`loop`), or a thread's (`loop` None)."""

    messages: tuple[Message, ...]
    context: contextvars.Context
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[int] | concurrent.futures.Future[int]


@dataclass
class SenderStats:
    """What a sender has done since it started (tests and benchmarks count these)."""

    batches: int = 0
    messages: int = 0
    failed: int = 0


def _resolve(done: list[tuple[asyncio.Future[int] | concurrent.futures.Future[int], int]]) -> None:
    for future, sent in done:
        if not future.done():  # the request may have been cancelled meanwhile
            future.set_result(sent)


class Sender:
    """Publishes handed-over stage messages from one thread, a batch per wake-up."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self.stats = SenderStats()
        self._lock = threading.Lock()
        # The thread and the queue it reads; both replaced when the sender is closed, so a
        # later use starts afresh (the API app closes it at shutdown, tests build many apps).
        self._thread: threading.Thread | None = None
        self._waiting: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()

    async def send(self, messages: Iterable[Message]) -> int:
        """Hand messages over and wait until they are published; returns how many were (all
        or none: a batch that fails leaves its messages to the relay)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._put(_Waiting(tuple(messages), contextvars.copy_context(), loop, future))
        return await future

    def send_blocking(self, messages: Iterable[Message], timeout: float = BLOCKING_WAIT) -> int:
        """Hand messages over from a thread and wait until they are published; returns how many
        were (0 when the batch failed or the wait ran out: the relay sends them)."""
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._put(_Waiting(tuple(messages), contextvars.copy_context(), None, future))
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            log.warning("sender.wait_expired", timeout=timeout)
            return 0

    def _put(self, item: _Waiting) -> None:
        with self._lock:
            if self._thread is None:
                # Started on first use, in the process that uses it (never inherited by a fork).
                self._thread = threading.Thread(
                    target=self._run, args=(self._waiting,), name="opsgate-sender", daemon=True
                )
                self._thread.start()
            self._waiting.put(item)

    def close(self, timeout: float = 10.0) -> None:
        """Send what was handed over, then stop the thread (a later use starts a new one)."""
        with self._lock:
            thread, waiting = self._thread, self._waiting
            self._thread, self._waiting = None, queue.SimpleQueue()
        if thread is not None:
            waiting.put(None)
            thread.join(timeout)
            stats = self.stats
            log.info(
                "sender.closed", batches=stats.batches, sent=stats.messages, failed=stats.failed
            )

    def _run(self, waiting: queue.SimpleQueue[_Waiting | None]) -> None:
        channel = _Channel()
        try:
            while True:
                first = waiting.get()
                if first is None:
                    return
                batch, size, stop = [first], len(first.messages), False
                while size < self.max_batch:
                    try:
                        more = waiting.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                    size += len(more.messages)
                self._deliver(channel, batch)
                if stop:
                    return
        finally:
            channel.close()

    def _deliver(self, channel: _Channel, batch: list[_Waiting]) -> None:
        count = sum(len(item.messages) for item in batch)
        try:
            sent = channel.publish(batch)
        except Exception:
            # The thread must outlive any error, or every later accept would wait forever;
            # the messages stay due on their jobs and the relay sends them. The next batch
            # starts from a new producer.
            log.exception("sender.batch_failed", messages=count)
            channel.close()
            sent = False
        self.stats.batches += 1
        self.stats.messages += count if sent else 0
        self.stats.failed += 0 if sent else count
        by_loop: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[int] | concurrent.futures.Future[int], int]],
        ]
        by_loop = defaultdict(list)
        for item in batch:
            result = (item.future, len(item.messages) if sent else 0)
            if item.loop is None:
                _resolve([result])  # a thread waits on it: no loop to wake
            else:
                by_loop[item.loop].append(result)
        for loop, results in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, results)


class _Channel:
    """The sender thread's way to Redis: one producer for the thread's life, and one open kombu
    publish batch kept between batches and flushed once per batch (kombu's batch holds one
    Redis client and one pipeline; opening one per batch would build a client each time).

    A failed batch is replaced (kombu refuses to reuse one), the producer is kept: redis-py
    reconnects its pooled connections on the next write, which fails at once while Redis is
    down, whereas a new producer from Celery's pool first retries its connection for seconds.
    Used by one thread only: kombu keeps the open batch per thread.
    """

    def __init__(self) -> None:
        self._app: Celery | None = None
        self._producer: Producer | None = None
        self._holding = contextlib.ExitStack()  # the producer, given back to Celery's pool
        self._batching: contextlib.ExitStack | None = None
        self._batch: Any = None  # kombu's open batch (its class is not public)

    def _open(self) -> tuple[Celery, Producer, Any]:
        app = publisher()
        if self._app is not app or self._producer is None:
            self.close()  # the process's Celery app changed (new settings): its own producer
            self._producer = self._holding.enter_context(app.producer_pool.acquire(block=True))
            self._app = app
        if self._batching is None:
            batching = contextlib.ExitStack()
            self._batch = batching.enter_context(self._producer.batch(max_size=MAX_BATCH))
            self._batching = batching
        return app, self._producer, self._batch

    def publish(self, batch: list[_Waiting]) -> bool:
        """Publish the batch in one pipeline, retried as Celery's publish retry policy says;
        False when Redis refused it every time."""
        policy = publisher().conf.task_publish_retry_policy or {}
        retries = int(policy.get("max_retries", 0))
        wait, step = float(policy.get("interval_start", 0)), float(policy.get("interval_step", 0))
        for attempt in range(retries + 1):
            try:
                app, producer, open_batch = self._open()
                for item in batch:
                    # In the context the messages were handed over in: the tracing hooks on
                    # publish (OpenTelemetry, Sentry) put the request's trace into each one.
                    item.context.run(_buffer, app, producer, item.messages)
                open_batch.flush()
                return True
            except (KombuError, RedisError, OSError) as exc:
                # A failed pipeline's delivery is uncertain: sending it again may duplicate a
                # message, which the stage that takes it skips (app.stages.runner).
                self._drop_batch()
                log.warning(
                    "sender.publish_failed",
                    messages=sum(len(item.messages) for item in batch),
                    attempt=attempt + 1,
                    error=str(exc),
                )
                if attempt < retries:
                    time.sleep(min(wait + attempt * step, float(policy.get("interval_max", 1))))
        return False

    def _drop_batch(self) -> None:
        batching, self._batching, self._batch = self._batching, None, None
        if batching is not None:
            # Leaving kombu's batch context with an error discards what it still buffers
            # (nothing between batches) instead of flushing it.
            with contextlib.suppress(Exception):
                batching.__exit__(RuntimeError, RuntimeError("batch dropped"), None)

    def close(self) -> None:
        """Close the open batch (nothing is buffered between batches) and give back the
        producer."""
        batching, self._batching, self._batch = self._batching, None, None
        try:
            if batching is not None:
                batching.close()
            self._holding.close()
        except Exception as exc:  # a broken connection cannot fail the sender's exit
            log.warning("sender.close_failed", error=str(exc))
        self._holding, self._app, self._producer = contextlib.ExitStack(), None, None


def _buffer(app: Celery, producer: Producer, messages: tuple[Message, ...]) -> None:
    """Add messages to the producer's open batch (sent when the batch is flushed)."""
    for m in messages:
        # declare=[]: the default exchange routes by queue name, so there is nothing to
        # declare (Celery would bind the queue again for every publish). The reprs of the
        # arguments are written by the publish hook (app.jobs.celery_config.stamp_message),
        # so Celery's own are not computed.
        app.send_task(
            m.task,
            args=[m.job_id],
            queue=m.queue,
            producer=producer,
            declare=[],
            retry=False,
            argsrepr="",
            kwargsrepr="",
        )


def sender() -> Sender:
    """This process's sender (built on first use, one per process)."""
    return per_process("stage-message-sender", Sender)
