"""app/controls/breaker.py: the fleet-wide circuit breaker against a real Redis (state shared
by every process)."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from app.controls import breaker
from app.errors import CircuitOpen
from tests.support.env import reset_process_state
from tests.support.processes import free_port


@pytest.fixture
def breaker_env(clean_env, redis_db_url, monkeypatch):
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    monkeypatch.setenv("OPSGATE_BREAKER_MIN_CALLS", "6")
    monkeypatch.setenv("OPSGATE_BREAKER_FAILURE_RATE", "0.5")
    monkeypatch.setenv("OPSGATE_BREAKER_WINDOW", "30")
    monkeypatch.setenv("OPSGATE_BREAKER_OPEN_SECONDS", "0.4")
    monkeypatch.setenv("OPSGATE_BREAKER_PROBES", "2")
    reset_process_state()
    breaker.reset("stripe")
    breaker.reset("zendesk")
    yield
    breaker.reset("stripe")
    breaker.reset("zendesk")


def test_opens_on_failure_rate_after_the_minimum_calls(breaker_env):
    # Given 5 calls, 3 failed: 60% failures but under the minimum of 6 calls
    for ok in (True, False, True, False, False):
        breaker.before_call("stripe", write=True)
        assert breaker.record("stripe", ok=ok) == "closed"
    # When the sixth call fails too (4/6 failed)
    breaker.before_call("stripe", write=True)
    assert breaker.record("stripe", ok=False) == "open"
    # Then no call goes out, and the refusal says when to come back
    with pytest.raises(CircuitOpen) as refused:
        breaker.before_call("stripe", write=False)
    assert refused.value.system == "stripe" and refused.value.retry_at > time.time()
    # And other systems are not affected
    breaker.before_call("zendesk", write=True)


def test_a_healthy_failure_rate_keeps_it_closed(breaker_env):
    for i in range(20):
        breaker.before_call("stripe", write=True)
        assert breaker.record("stripe", ok=i % 3 != 0) == "closed"  # 7/20 failed: 35%
    assert breaker.status("stripe") == {"state": "closed"}


def _trip(system: str) -> None:
    for _ in range(6):
        breaker.before_call(system, write=True)
        breaker.record(system, ok=False)


def _wait_half_open(system: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            breaker.before_call(system, write=True)
            return
        except CircuitOpen as exc:
            time.sleep(max(0.01, min(0.2, exc.retry_at - time.time())))
    raise AssertionError("breaker never let a probe through")


def test_half_open_lets_only_the_probes_through_and_closes_on_success(breaker_env):
    _trip("stripe")
    _wait_half_open("stripe")  # first probe
    breaker.before_call("stripe", write=True)  # second probe
    with pytest.raises(CircuitOpen):
        breaker.before_call("stripe", write=True)  # a third caller waits
    assert breaker.record("stripe", ok=True) == "closed"
    breaker.before_call("stripe", write=True)
    assert breaker.status("stripe") == {"state": "closed"}


def test_a_failed_probe_opens_it_again(breaker_env):
    _trip("stripe")
    _wait_half_open("stripe")
    assert breaker.record("stripe", ok=False) == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call("stripe", write=False)


def _trip_in_child(url: str) -> None:
    import os

    os.environ["OPSGATE_REDIS_URL"] = url
    os.environ["OPSGATE_BREAKER_MIN_CALLS"] = "6"
    # Open long enough that the parent, which waits for this process to exit, still finds
    # it open (the fixture's 0.4 s could pass while a loaded machine starts the child).
    os.environ["OPSGATE_BREAKER_OPEN_SECONDS"] = "30"
    reset_process_state()
    _trip("stripe")


def test_state_is_shared_by_every_process(breaker_env, redis_db_url):
    # When another process sees the failures
    child = multiprocessing.get_context("spawn").Process(
        target=_trip_in_child, args=(redis_db_url,)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    # Then this process refuses calls too
    with pytest.raises(CircuitOpen):
        breaker.before_call("stripe", write=False)


def test_without_redis_writes_fail_closed_and_reads_go_ahead(clean_env, monkeypatch):
    monkeypatch.setenv("OPSGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_process_state()
    breaker.before_call("stripe", write=False)
    with pytest.raises(CircuitOpen, match="writes fail closed"):
        breaker.before_call("stripe", write=True)
