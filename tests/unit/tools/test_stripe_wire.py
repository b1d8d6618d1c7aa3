"""The Stripe adapter speaks Stripe's wire format without the SDK: over real HTTP, each of its
requests is the one stripe-python (a dev dependency, kept as the reference) sends for the same
call, and Stripe's error answers map to opsgate's errors by status, type and code."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe
from stripe._encode import _api_encode

from app.errors import ConflictError, NotFound, PermanentError, RetryableError
from tests.support.env import reset_process_state
from tests.support.processes import free_port
from tools.stripe import client as stripe_api

KEY = "sk_test_wire"
CHARGE = {"id": "ch_1001", "object": "charge", "amount": 2500, "currency": "usd"}
# The request headers that carry meaning (the user agents name each client, as they should).
COMPARED_HEADERS = ("authorization", "content-type", "idempotency-key", "stripe-version")


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    target: str  # path and query, exactly as sent
    body: bytes
    headers: dict[str, str]

    def wire(self) -> tuple[str, str, bytes, dict[str, str | None]]:
        return (
            self.method,
            self.target,
            self.body,
            {h: self.headers.get(h) for h in COMPARED_HEADERS},
        )


class FakeStripe:
    """A real HTTP server on a free port that records each request and answers with
    `answer` (status, JSON body, extra headers)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[Seen] = []
        self.answer: tuple[int, Any, dict[str, str]] = (200, CHARGE, {})
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.seen.append(Seen(self.command, self.path, body, headers))
                status, payload, extra = fake.answer
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _serve  # noqa: N815 (http.server's names)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> Iterator[FakeStripe]:
    """The fake Stripe, with the adapter pointed at it."""
    server = FakeStripe()
    monkeypatch.setenv("OPSGATE_STRIPE_API_BASE", server.url)
    monkeypatch.setenv("OPSGATE_STRIPE_API_KEY", KEY)
    reset_process_state()
    yield server
    reset_process_state()
    server.close()


def _one(fake: FakeStripe, call: Callable[[], Any]) -> Seen:
    fake.seen.clear()
    call()
    [seen] = fake.seen
    return seen


def test_each_request_is_the_one_stripe_python_sends(fake: FakeStripe) -> None:
    sdk = stripe.StripeClient(KEY, base_addresses={"api": fake.url}, max_network_retries=0)
    metadata = {"opsgate_step": "job-1:s1", "note": "a b&c=[d]"}
    refund_params: Any = {
        "charge": "ch_1001",
        "amount": 2500,
        "reason": "requested_by_customer",
        "metadata": metadata,
    }
    page = {"object": "list", "data": [CHARGE], "has_more": False, "url": "/v1/charges"}
    pairs = [
        (
            lambda: sdk.v1.charges.retrieve("ch_1001"),
            lambda: stripe_api.get_charge("ch_1001"),
        ),
        (
            lambda: sdk.v1.charges.list(
                params={"customer": "cus_1", "limit": 100, "created": {"gte": 1700000000}}
            ),
            lambda: stripe_api.list_charges("cus_1", 1700000000),
        ),
        (
            lambda: sdk.v1.refunds.list(params={"charge": "ch_1001", "limit": 100}),
            lambda: stripe_api.list_refunds("ch_1001"),
        ),
        (
            lambda: sdk.v1.refunds.create(
                params=refund_params, options={"idempotency_key": "job-1:s1"}
            ),
            lambda: stripe_api.refund(
                "ch_1001",
                2500,
                "requested_by_customer",
                idempotency_key="job-1:s1",
                metadata=metadata,
            ),
        ),
    ]
    for by_sdk, by_adapter in pairs:
        fake.answer = (200, page, {})
        expected = _one(fake, by_sdk).wire()
        assert _one(fake, by_adapter).wire() == expected
    # The one write carries its key and the pinned version
    assert expected[3]["idempotency-key"] == "job-1:s1"
    assert expected[3]["stripe-version"] == stripe_api.STRIPE_API_VERSION


def test_the_form_encoding_is_stripe_pythons() -> None:
    params = {
        "a": 1,
        "b": None,
        "flag": True,
        "off": False,
        "metadata": {"k": "v", "n": {"deep": 2}},
        "expand": ["x", "y"],
        "items": [{"price": "p_1", "qty": 2}, ["m", "n"]],
        "text": "é & =",
    }
    assert stripe_api.encode(params) == [(k, str(v)) for k, v in _api_encode(params)]


def test_a_read_returns_stripes_object(fake: FakeStripe) -> None:
    assert stripe_api.get_charge("ch_1001") == CHARGE
    fake.answer = (200, {"object": "list", "data": [CHARGE, {**CHARGE, "id": "ch_2"}]}, {})
    assert [c["id"] for c in stripe_api.list_charges("cus_1")] == ["ch_1001", "ch_2"]


def _error(code: str | None, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"type": type_, "code": code, "message": f"message for {code}"}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "raised", "retry_after"),
    [
        (404, _error("resource_missing"), {}, NotFound, None),
        (400, _error(None, "idempotency_error"), {}, ConflictError, None),
        (400, _error("charge_already_refunded"), {}, PermanentError, None),
        (401, _error(None), {}, PermanentError, None),
        (429, _error("rate_limit"), {"Retry-After": "3"}, RetryableError, 3.0),
        (400, _error("rate_limit"), {}, RetryableError, None),
        (409, _error("idempotency_key_in_use"), {}, RetryableError, None),
        (500, _error(None, "api_error"), {}, RetryableError, None),
        (502, "<html>bad gateway</html>", {}, RetryableError, None),
    ],
)
def test_errors_map_by_status_type_and_code(
    fake: FakeStripe,
    status: int,
    body: Any,
    headers: dict[str, str],
    raised: type[Exception],
    retry_after: float | None,
) -> None:
    fake.answer = (status, body, headers)
    with pytest.raises(raised) as err:
        stripe_api.refund("ch_1001", 100, "duplicate", idempotency_key="k", metadata={})
    assert type(err.value) is raised
    if isinstance(err.value, RetryableError):
        assert err.value.retry_after == retry_after
    code = body["error"]["code"] if isinstance(body, dict) else None
    if raised in (NotFound, PermanentError) and code:
        assert f"({code})" in str(err.value)


def test_an_unreachable_stripe_is_retryable(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("OPSGATE_STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
    reset_process_state()
    with pytest.raises(RetryableError, match="stripe unreachable"):
        stripe_api.get_charge("ch_1001")
    reset_process_state()
