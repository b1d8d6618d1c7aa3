"""The stage-message sender (the API's and the workers') against real Redis and PostgreSQL:
what an accept or a stage's commit costs in Redis clients and thread hand-offs, batching, and
what happens while Redis is down (counts, never timings)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
import redis
from celery import signals
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.db import session_scope
from app.jobs import outbox
from app.jobs.lifecycle import Message
from app.jobs.sender import Sender, sender
from app.models import Job
from tests.integration.test_intake_http import SECRET, signed, zendesk_event
from tests.support.env import reset_process_state
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def client_for(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("OPSGATE_ZENDESK_WEBHOOK_SECRET", SECRET)
    reset_process_state()
    from app.api.main import create_app

    return TestClient(create_app())


def deliver(client: TestClient, ticket: int) -> Any:
    body = zendesk_event(ticket, 101)
    return client.post("/webhooks/zendesk", content=body, headers=signed(body))


def due() -> int:
    """Jobs whose plan message is still due (the relay would send it)."""
    with session_scope() as s:
        query = select(func.count()).select_from(Job).where(Job.message_due_at.is_not(None))
        return int(s.scalar(query) or 0)


def start_counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of redis.Redis clients built and of threadpool hand-offs, from now on."""
    counts = {"clients": 0, "handoffs": 0}
    build, run_sync = redis.Redis.__init__, anyio.to_thread.run_sync

    def counting_init(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        counts["clients"] += 1
        build(self, *args, **kwargs)

    async def counting_run_sync(*args: Any, **kwargs: Any) -> Any:
        counts["handoffs"] += 1
        return await run_sync(*args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting_init)
    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    return counts


def test_accepts_build_no_redis_client_and_hand_off_to_one_thread_each(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = redis.Redis.from_url(pg_env["OPSGATE_REDIS_URL"])
    with client_for(monkeypatch) as client:
        # Given an API that has accepted one delivery (its sender is connected)
        assert deliver(client, 4800).status_code == 202
        counts = start_counting(monkeypatch)
        # When 20 more deliveries are accepted
        codes = [deliver(client, 4801 + n).status_code for n in range(20)]
        # Then each was accepted, and its plan message is on the plan queue when it returned
        assert codes == [202] * 20
        assert plan.llen("plan") == 21
        # And publishing them built no Redis client (kombu would build one per publish)
        assert counts["clients"] == 0
        # And each accept handed work to a thread once: the transaction, not the send
        assert counts["handoffs"] == 20
    assert due() == 21  # sent from memory: the plan stage marks a message taken


def test_messages_handed_over_together_go_out_together_each_in_its_own_context(
    pg_env: dict[str, str],
) -> None:
    # Given a sender, and a publish hook that records a context variable of each publisher
    request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")
    seen: list[tuple[str, str]] = []

    def hook(headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
        seen.append((body[0][0], request.get()))

    signals.before_task_publish.connect(hook, weak=False, dispatch_uid="test.sender.context")
    one = Sender()
    try:

        async def accept(n: int) -> int:
            request.set(f"request-{n}")
            return await one.send([Message(f"job-{n}", "opsgate.plan", "plan")])

        async def many() -> list[int]:
            return await asyncio.gather(*(accept(n) for n in range(100)))

        # When 100 requests hand a message over at once (on a loop of their own thread: an
        # earlier test's browser driver may have left a loop running on this one)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            sent = pool.submit(asyncio.run, many()).result()
    finally:
        one.close()
        signals.before_task_publish.disconnect(dispatch_uid="test.sender.context")
    # Then every message was sent, in far fewer pipelined batches than messages
    assert sent == [1] * 100
    assert redis.Redis.from_url(pg_env["OPSGATE_REDIS_URL"]).llen("plan") == 100
    assert one.stats.messages == 100 and one.stats.batches <= 20
    # And each was published in the context of the request that handed it over
    assert sorted(seen) == sorted((f"job-{n}", f"request-{n}") for n in range(100))


@pytest.fixture
def private_redis(
    pg_env: dict[str, str], own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisServer]:
    monkeypatch.setenv("OPSGATE_REDIS_URL", own_redis.url)
    yield own_redis


def test_messages_the_sender_could_not_send_are_left_to_the_relay(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_for(monkeypatch) as client:
        # Given an API whose sender has sent one message, and then Redis stops
        assert deliver(client, 4821).status_code == 202
        private_redis.stop()
        # When deliveries arrive while Redis is down
        codes = [deliver(client, 4822 + n).status_code for n in range(3)]
        # Then they are accepted, their messages still due on their jobs
        assert codes == [202] * 3
        assert due() == 4 and sender().stats.failed == 3
        # And once Redis is back, the same sender sends the next accept's message
        private_redis.start()
        assert deliver(client, 4830).status_code == 202
        queue = redis.Redis.from_url(private_redis.url)
        assert queue.llen("plan") == 1
        # And the relay sends every message still due (the restart emptied Redis)
        assert outbox.relay(0) == 5
        assert queue.llen("plan") == 6 and due() == 0


def test_worker_threads_send_what_they_committed_through_the_one_sender(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from app.jobs import lifecycle
    from app.jobs.outbox import send_written

    queue = redis.Redis.from_url(pg_env["OPSGATE_REDIS_URL"])
    # Given a process whose sender has sent once (connected), as after a worker's first task
    reset_process_state()
    assert sender().send_blocking([Message("job-0", "opsgate.verify_proposal", "verify")]) == 1
    counts = start_counting(monkeypatch)
    sent: list[int] = []

    def stage_commit(n: int) -> None:
        # What a stage's committed transaction leaves for the send (app.jobs.lifecycle)
        with session_scope() as session:
            session.info[lifecycle.WRITTEN] = [(f"job-{n}", "opsgate.verify_proposal", "verify")]
            sent.append(send_written(session))
            # Sent once: the record of what the transaction wrote is consumed
            assert lifecycle.WRITTEN not in session.info

    # When 16 worker threads send what their stages committed, at once
    threads = [threading.Thread(target=stage_commit, args=(n,)) for n in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then each thread returned with its message out, on its stage's queue
    assert sent == [1] * 16
    assert queue.llen("verify") == 17
    # And no Redis client was built for them (a send_task per message built one each)
    assert counts["clients"] == 0
    # And a transaction that wrote no message sends nothing
    with session_scope() as session:
        assert send_written(session) == 0
