"""app/controls/breaker.py's window against a real Redis: the running sums the record keeps
(so that a record does not sum every bucket) stay equal to a recount of the window's buckets
as buckets expire, after long gaps, for late stamps and under concurrent records."""

from __future__ import annotations

import random
import threading

import pytest

from app.controls import breaker
from app.core import broker
from tests.support.env import reset_process_state

WINDOW = 30  # seconds, one bucket a second
T0 = 1_800_000_000_000  # ms, on a bucket boundary


class Clock:
    """The breaker's clock, per thread, set by the test (no waiting for real time)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def __call__(self) -> int:
        now: int = self.local.now
        return now

    def set(self, ms: int) -> None:
        self.local.now = ms


@pytest.fixture
def clock(clean_env, redis_db_url, monkeypatch) -> Clock:
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    monkeypatch.setenv("OPSGATE_BREAKER_WINDOW", str(WINDOW))
    monkeypatch.setenv("OPSGATE_BREAKER_FAILURE_RATE", "0.5")
    monkeypatch.setenv("OPSGATE_BREAKER_MIN_CALLS", "7")
    monkeypatch.setenv("OPSGATE_BREAKER_OPEN_SECONDS", "30")
    reset_process_state()
    fake = Clock()
    monkeypatch.setattr(breaker, "_now_ms", fake)
    breaker.reset("stripe")
    return fake


def _window(system: str) -> dict[str, int]:
    """The window's hash as numbers."""
    raw: dict[bytes, bytes] = broker.client().hgetall(breaker._keys(system)[2])  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def _sums(system: str) -> tuple[int, int]:
    """The running sums the record keeps."""
    window = _window(system)
    return window.get("calls", 0), window.get("failures", 0)


def _recount(system: str) -> tuple[int, int]:
    """The same sums, counted again from the window's buckets."""
    window = _window(system)
    calls = sum(v for k, v in window.items() if k[0] == "c" and k != "calls")
    failures = sum(v for k, v in window.items() if k[0] == "f" and k != "failures")
    return calls, failures


def _record(clock: Clock, ms: int, *, ok: bool, system: str = "stripe") -> str | None:
    clock.set(ms)
    return breaker.record(system, ok=ok)


def test_calls_leave_the_sums_when_their_bucket_leaves_the_window(clock: Clock) -> None:
    # Given 5 failures in the first second of a window
    for i in range(5):
        assert _record(clock, T0 + i, ok=False) == "closed"
    # And a success 29 s later, still inside it
    assert _record(clock, T0 + 29_000, ok=True) == "closed"
    assert _sums("stripe") == (6, 5) == _recount("stripe")
    # When the next call, 30 s after the first ones, finds their bucket gone
    assert _record(clock, T0 + 30_000, ok=False) == "closed"
    # Then only the two recent calls count (1 failure of 2, under the minimum of 7), where
    # 7 calls with 6 failures would have opened it
    assert _sums("stripe") == (2, 1) == _recount("stripe")


def test_the_same_calls_inside_the_window_open_it(clock: Clock) -> None:
    for i in range(5):
        _record(clock, T0 + i, ok=False)
    _record(clock, T0 + 29_000, ok=True)
    # The seventh call 29.9 s after the first: 6 failures of 7 in the window
    assert _record(clock, T0 + 29_900, ok=False) == "open"


def test_a_gap_longer_than_the_window_starts_afresh(clock: Clock) -> None:
    for i in range(5):
        _record(clock, T0 + i * 1000, ok=False)
    assert _record(clock, T0 + 4_000 + WINDOW * 1000, ok=False) == "closed"
    assert _sums("stripe") == (1, 1) == _recount("stripe")


def test_a_late_stamp_counts_in_its_own_bucket_or_else_the_newest(clock: Clock) -> None:
    _record(clock, T0 + 10_000, ok=True)
    # Another worker's clock 3 s behind: its bucket is still in the window
    _record(clock, T0 + 7_000, ok=False)
    assert _sums("stripe") == (2, 1) == _recount("stripe")
    # So it leaves the window with its own bucket, 30 s after its own stamp
    _record(clock, T0 + 37_000, ok=True)
    assert _sums("stripe") == (2, 0) == _recount("stripe")
    # A stamp from before the window counts as a call that has just finished
    _record(clock, T0 + 1_000, ok=False)
    assert _sums("stripe") == (3, 1) == _recount("stripe")
    _record(clock, T0 + 66_999, ok=True)  # the 10 s bucket has left, the 37 s one has not
    assert _sums("stripe") == (3, 1) == _recount("stripe")
    _record(clock, T0 + 67_000, ok=True)  # now the 37 s one has left too
    assert _sums("stripe") == (2, 0) == _recount("stripe")


def test_the_running_sums_match_a_recount_and_an_independent_count(
    clock: Clock, monkeypatch
) -> None:
    # A minimum no sequence reaches: the arithmetic alone, never an open breaker
    monkeypatch.setattr(
        breaker, "_settings", lambda: breaker.BreakerSettings(WINDOW, 10**9, 0.5, 30, 2)
    )
    rng = random.Random(20)
    now = T0
    seen: list[tuple[int, bool]] = []  # (bucket, ok) of every call recorded
    for _ in range(600):
        # Mostly calls close together, sometimes seconds apart, now and then a long gap
        now += rng.choice([0, 40, 250, 900, 1_000, 3_000, 7_500, 31_000])
        ok = rng.random() < 0.7
        assert _record(clock, now, ok=ok) == "closed"
        seen.append((now // 1000, ok))
        live = [ok_ for bucket, ok_ in seen if bucket > now // 1000 - WINDOW]
        expected = (len(live), sum(1 for ok_ in live if not ok_))
        assert _sums("stripe") == expected == _recount("stripe")


def test_concurrent_records_from_threads_are_all_counted(clock: Clock, monkeypatch) -> None:
    monkeypatch.setattr(
        breaker, "_settings", lambda: breaker.BreakerSettings(WINDOW, 10**9, 0.5, 30, 2)
    )
    failures = [0] * 8
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        rng = random.Random(n)
        try:
            # Each thread's clock moves on by itself, up to 20 s: records arrive out of order
            # across threads, so buckets both move the window on and land behind its head.
            for i in range(150):
                ok = rng.random() < 0.6
                failures[n] += not ok
                _record(clock, T0 + i * 133 + rng.randrange(0, 500), ok=ok)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _sums("stripe") == (8 * 150, sum(failures)) == _recount("stripe")
