"""tasks/base.py: retry countdowns honour Retry-After and stay below a minute; downstream
retries end in an escalation; a database outage is waited out, never failed or escalated."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from celery import Celery, Task
from celery.canvas import Signature
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from app.core import db
from app.errors import RetryableError
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


# The mapping of a stage's errors to what Celery does with the message, through a real Celery
# task run in this process (`apply`); publishing a message again is recorded, not sent.
_app = Celery("test-tasks-base", set_as_current=False)
STAGE: Any = SimpleNamespace(name="execute")


@_app.task(bind=True, name="test.stage")
def stage_task(self: Task, job_id: str) -> str:
    return base.run(self, STAGE, job_id)


def lost_connection() -> OperationalError:
    return OperationalError(
        "SELECT 1", {}, psycopg.OperationalError("server closed the connection unexpectedly")
    )


@pytest.fixture
def stage(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Stand-ins for the stage harness; `errors` are raised by run_stage, one per delivery."""
    seen = SimpleNamespace(errors=[], give_up=[], give_up_error=None, sent=[])

    def run_stage(_stage: Any, _job_id: str) -> str:
        if seen.errors:
            raise seen.errors.pop(0)
        return "done"

    def give_up(name: str, job_id: str, exc: Exception) -> None:
        if seen.give_up_error is not None:
            raise seen.give_up_error
        seen.give_up.append((name, job_id, exc))

    monkeypatch.setattr(base.runner, "run_stage", run_stage)
    monkeypatch.setattr(base.runner, "give_up", give_up)
    monkeypatch.setattr(Signature, "apply_async", lambda sig: seen.sent.append(sig))
    monkeypatch.setattr(base.random, "uniform", lambda a, b: b)
    return seen


def test_the_last_downstream_retry_is_taken_and_then_the_job_escalates(
    stage: SimpleNamespace,
) -> None:
    # Given a retry_max of 4 (the default) and a message already retried 3 times
    stage.errors = [RetryableError("503"), RetryableError("503")]
    # When the stage meets a transient error again
    result = stage_task.apply(args=("job-1",), retries=3)
    # Then Celery retries it a 4th time (its default limit of 3 would fail the task and drop
    # the message), and after that the job escalates
    assert result.state == "SUCCESS", result.result
    assert result.result == "escalated"
    assert [g[:2] for g in stage.give_up] == [("execute", "job-1")]


def test_a_lost_database_connection_sends_the_message_again_without_spending_a_retry(
    stage: SimpleNamespace,
) -> None:
    # Given a message that already spent 2 downstream retries and met the database down 3 times
    stage.errors = [lost_connection()]
    # When the database is unavailable again
    result = stage_task.apply(args=("job-1",), retries=2, headers={base.DB_RETRIES_HEADER: 3})
    # Then the same message goes out again with backoff (the window for a 4th attempt), its
    # downstream retry count unchanged; the task neither fails nor escalates the job
    assert result.state == "RETRY", result.result
    [again] = stage.sent
    assert again.args == ("job-1",)
    assert again.options["retries"] == 2
    assert again.options["headers"][base.DB_RETRIES_HEADER] == 4
    assert again.options["countdown"] == 4.0
    assert stage.give_up == []


def test_the_database_lost_while_escalating_is_waited_out_too(stage: SimpleNamespace) -> None:
    stage.errors = [RetryableError("503")]
    stage.give_up_error = lost_connection()
    result = stage_task.apply(args=("job-1",), retries=4)
    assert result.state == "RETRY", result.result
    [again] = stage.sent
    assert again.options["retries"] == 4
    assert again.options["headers"][base.DB_RETRIES_HEADER] == 1


def test_other_errors_still_fail_the_task(stage: SimpleNamespace) -> None:
    stage.errors = [IntegrityError("INSERT", {}, Exception("duplicate key"))]
    result = stage_task.apply(args=("job-1",))
    assert result.state == "FAILURE"
    assert isinstance(result.result, IntegrityError)
    assert stage.sent == []


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (lost_connection(), True),
        (InterfaceError("SELECT 1", {}, Exception("the connection is closed")), True),
        (DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True), True),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (ValueError("not a database error"), False),
    ],
)
def test_which_database_errors_are_transient(exc: BaseException, transient: bool) -> None:
    assert db.transient(exc) is transient
