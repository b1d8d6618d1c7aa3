"""app/controls/ratelimit.py: per-tool budgets per second, counted in the real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from app.controls import ratelimit
from app.errors import RateLimited
from tests.support.env import reset_process_state


@pytest.fixture
def counted(clean_env: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """opsgate pointed at the test's Redis database, emptied; returns a client to read it."""
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    reset_process_state()
    client = redis.Redis.from_url(redis_db_url)
    client.flushdb()
    return client


def fresh_window() -> int:
    """Wait for the start of a new second, so a test's calls all fall in one window."""
    time.sleep(1 - time.time() % 1 + 0.01)
    return int(time.time())


def test_no_limit_counts_nothing(counted: redis.Redis) -> None:
    for _ in range(50):
        ratelimit.acquire("stripe.refund", None, write=True)
        ratelimit.acquire("stripe.refund", 0, write=True)

    assert counted.keys(f"{ratelimit.PREFIX}*") == []


def test_calls_over_the_limit_raise_until_the_next_window(counted: redis.Redis) -> None:
    window = fresh_window()
    for _ in range(3):
        ratelimit.acquire("stripe.refund", 3, write=True)

    with pytest.raises(RateLimited) as raised:
        ratelimit.acquire("stripe.refund", 3, write=True)

    assert raised.value.system == "stripe.refund"
    assert raised.value.retry_at == window + 1
    assert "over 3 calls per second" in raised.value.why
    # The refused call was counted too: the window's counter shows every attempt.
    assert int(counted.get(f"{ratelimit.PREFIX}stripe.refund:{window}") or 0) == 4


def test_each_tool_has_its_own_budget(counted: redis.Redis) -> None:
    fresh_window()
    ratelimit.acquire("stripe.refund", 1, write=True)
    ratelimit.acquire("zendesk.add_comment", 1, write=True)

    with pytest.raises(RateLimited):
        ratelimit.acquire("stripe.refund", 1, write=True)
    with pytest.raises(RateLimited):
        ratelimit.acquire("zendesk.add_comment", 1, write=True)


def test_a_new_second_is_a_new_budget(counted: redis.Redis) -> None:
    fresh_window()
    ratelimit.acquire("okta.suspend_user", 1, write=True)
    with pytest.raises(RateLimited):
        ratelimit.acquire("okta.suspend_user", 1, write=True)

    fresh_window()
    ratelimit.acquire("okta.suspend_user", 1, write=True)


def test_counters_expire_within_seconds(counted: redis.Redis) -> None:
    window = fresh_window()
    ratelimit.acquire("stripe.refund", 5, write=False)

    ttl = counted.ttl(f"{ratelimit.PREFIX}stripe.refund:{window}")
    assert 0 < ttl <= 5


def test_without_redis_writes_fail_closed_and_reads_go_ahead(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Redis URL where nothing listens
    monkeypatch.setenv("OPSGATE_REDIS_URL", "redis://127.0.0.1:1/0")
    reset_process_state()
    before = time.time()

    # Then a read is not held back
    ratelimit.acquire("stripe.get_charge", 1, write=False)
    # And a write parks for a few seconds, saying why
    with pytest.raises(RateLimited) as raised:
        ratelimit.acquire("stripe.refund", 1, write=True)
    assert "writes fail closed" in raised.value.why
    assert before + 5 <= raised.value.retry_at <= time.time() + 5
