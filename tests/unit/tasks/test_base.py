"""tasks/base.py: retry countdowns honour Retry-After and stay below a minute."""

from __future__ import annotations

import random

import pytest

from tasks import base


@pytest.mark.parametrize(
    ("retry_after", "countdown"),
    [(5.0, 5.0), (0.0, 0.0), (59.5, 59.5), (60.0, 60.0), (61.0, 60.0), (3600.0, 60.0), (-3.0, 0.0)],
)
def test_retry_after_is_honoured_and_capped(retry_after: float, countdown: float) -> None:
    for retries in (0, 3, 10):
        assert base.backoff(retries, retry_after) == countdown


@pytest.mark.parametrize(
    ("retries", "ceiling"), [(0, 0.5), (1, 1.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]
)
def test_jitter_window_doubles_up_to_a_minute(
    monkeypatch: pytest.MonkeyPatch, retries: int, ceiling: float
) -> None:
    # The countdown is drawn from [0, min(60, 0.5 * 2**retries)] (full jitter).
    windows: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        windows.append((a, b))
        return b

    monkeypatch.setattr(base.random, "uniform", uniform)

    assert base.backoff(retries, None) == ceiling
    assert windows == [(0, ceiling)]


def test_jittered_countdowns_stay_in_the_window() -> None:
    rng_state = random.getstate()
    try:
        random.seed(1234)
        for retries in range(12):
            ceiling = min(60.0, 0.5 * 2**retries)
            draws = [base.backoff(retries, None) for _ in range(200)]
            assert all(0.0 <= d <= ceiling for d in draws)
            assert len(set(draws)) > 1  # jittered, not a fixed delay
    finally:
        random.setstate(rng_state)
