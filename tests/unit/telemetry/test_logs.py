"""Log lines: one JSON object each, with the bound context, and no personal data anywhere in
them (nested values, exception messages, library records)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.jobs import celery_config
from app.telemetry import logs, observability


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Logs configured as the services configure them, written to a buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    logs.configure("INFO", "json")
    structlog.contextvars.clear_contextvars()

    def read() -> list[dict[str, Any]]:
        text, _ = buffer.getvalue(), buffer.truncate(0)
        buffer.seek(0)
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    yield read
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers.clear()


def test_bound_context_is_on_every_line_and_pii_is_redacted_at_any_depth(lines: Any) -> None:
    structlog.contextvars.bind_contextvars(job_id="j-1", stage="plan", task_id="t-1")
    log = structlog.get_logger("test")
    log.info(
        "ticket.read",
        requester="ann.lee@example.com",
        detail={"phone": "+1 (415) 555-0100", "cards": ["4242 4242 4242 4242"]},
    )
    try:
        raise ValueError("no customer bob@example.org with IBAN DE89 3704 0044 0532 0130 00")
    except ValueError:
        log.exception("stage.crashed")
    first, second = lines()
    assert (first["job_id"], first["stage"], first["task_id"]) == ("j-1", "plan", "t-1")
    assert first["requester"] == "[email]"
    assert first["detail"] == {"phone": "[phone]", "cards": ["[card]"]}
    assert second["level"] == "error" and second["job_id"] == "j-1"
    assert "ValueError" in second["exception"]
    assert "bob@example.org" not in second["exception"] and "DE89" not in second["exception"]


def test_library_records_get_the_same_context_and_redaction(lines: Any) -> None:
    structlog.contextvars.bind_contextvars(job_id="j-2")
    try:
        raise RuntimeError("carol@example.com")
    except RuntimeError:
        logging.getLogger("celery.app.trace").error(
            "Task failed for %s", "dan@example.com", exc_info=True
        )
    [line] = lines()
    assert line["job_id"] == "j-2" and line["event"] == "Task failed for [email]"
    assert "carol@example.com" not in line["exception"]


def test_http_clients_log_their_warnings_but_not_a_line_per_request(lines: Any) -> None:
    # A worker's 14 requests per job were 26 of its 32 log lines, each formatted and redacted.
    for name in ("httpx", "stripe"):
        logging.getLogger(name).info("HTTP Request: GET http://sandbox/v1/charges/ch_1 200")
        logging.getLogger(name).warning("Retrying in 1s")
    assert [line["event"] for line in lines()] == ["Retrying in 1s", "Retrying in 1s"]
    logs.configure("DEBUG", "json")
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)


def test_the_api_middleware_binds_a_request_id_and_returns_it(lines: Any) -> None:
    app = FastAPI()
    app.add_middleware(observability.RequestContext)

    @app.get("/ping")
    def ping() -> dict[str, str]:
        structlog.get_logger("test").info("ping.served")
        return {"ok": "yes"}

    client = TestClient(app)
    given = client.get("/ping", headers={"X-Request-ID": "req-42"})
    fresh = client.get("/ping", headers={"X-Request-ID": "not a safe id\n"})
    assert given.headers["x-request-id"] == "req-42"
    assert len(fresh.headers["x-request-id"]) == 32
    served = [line for line in lines() if line["event"] == "ping.served"]
    assert [(s["request_id"], s["path"], s["method"]) for s in served] == [
        ("req-42", "/ping", "GET"),
        (fresh.headers["x-request-id"], "/ping", "GET"),
    ]
    # Nothing leaks into the next request or task
    assert structlog.contextvars.get_contextvars() == {}


def test_task_arguments_reported_to_flower_show_ids_only() -> None:
    headers: dict[str, Any] = {"argsrepr": "['x']", "kwargsrepr": "{}"}
    body = (
        ["0b7c9a8e-3c1d-4f52-9f0e-2a8a6b1c4d5e", "eve@example.com", 7],
        {"note": "hi there"},
        {},
    )
    celery_config.stamp_message(headers=headers, body=body)
    assert headers["argsrepr"] == "['0b7c9a8e-3c1d-4f52-9f0e-2a8a6b1c4d5e', '[redacted]', 7]"
    assert headers["kwargsrepr"] == "{'note': '[redacted]'}"
    assert isinstance(headers[celery_config.PUBLISHED_HEADER], float)


def test_sentry_events_are_redacted_and_tagged_with_the_log_context() -> None:
    structlog.contextvars.bind_contextvars(job_id="j-3", stage="execute")
    try:
        event = {
            "event_id": "abc",
            "message": "refund for frank@example.com failed",
            "exception": {"values": [{"value": "card 4000 0566 5566 5556 declined"}]},
            "extra": {"vars": {"to": ["gina@example.com"]}},
            # a frame's local dict keyed by personal data
            "contexts": {"locals": {"by_login": {"hank@example.com": 1}}},
            "tags": {"component": "worker"},
        }
        out = observability._scrub(event, {})
    finally:
        structlog.contextvars.clear_contextvars()
    assert "@" not in json.dumps(out) and "5556" not in json.dumps(out)
    assert out["tags"] == {"component": "worker", "job_id": "j-3", "stage": "execute"}
    assert out["event_id"] == "abc"


def test_error_lines_reach_sentry_redacted_when_it_is_on(
    lines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentry_sdk

    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setitem(observability._state, "sentry", True)
    monkeypatch.setattr(
        sentry_sdk, "capture_message", lambda msg, **kw: sent.append((msg, kw["extras"]))
    )
    monkeypatch.setattr(sentry_sdk, "get_current_span", lambda: None)
    log = structlog.get_logger("test")
    log.info("stage.done", job_id="j-4")
    log.error("stage.dead_letter", job_id="j-4", requester="hal@example.com")
    assert [(m, e["job_id"], e["requester"]) for m, e in sent] == [
        ("stage.dead_letter", "j-4", "[email]")
    ]
