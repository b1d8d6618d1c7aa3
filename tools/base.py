"""What every downstream adapter shares: risk classes, error mapping, the HTTP call."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from app.errors import NotFound, PermanentError, RetryableError
from tools.http import TransportError

T = TypeVar("T")


class Response(Protocol):
    """An HTTP answer as the error mapping reads it: tools.http.Answer or an httpx.Response."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class Risk(StrEnum):
    """How much a tool call can change the world."""

    READ = "read"
    WRITE = "write"
    IRREVERSIBLE = "irreversible"


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from Retry-After (seconds form) or Okta's X-Rate-Limit-Reset (epoch)."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        if value is not None:
            return max(0.0, float(value))
        reset = headers.get("X-Rate-Limit-Reset") or headers.get("x-rate-limit-reset")
        return max(0.0, float(reset) - time.time()) if reset is not None else None
    except ValueError:
        return None


def error_detail(response: Response) -> str:
    """The system's own words for an error, from each API's error shape.

    Stripe: {"error": {"code", "message"}}; Zendesk: {"error", "description"};
    Salesforce: [{"errorCode", "message"}]; Okta: {"errorCode", "errorSummary"}.
    """
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in body[:3])
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            err = body["error"]
            return f"{err.get('code') or err.get('type')}: {err.get('message')}"
        if "errorCode" in body:
            return f"{body['errorCode']}: {body.get('errorSummary')}"
        if "error" in body:
            return f"{body['error']}: {body.get('description') or body.get('details') or ''}"
    return response.text[:300]


# Status codes that say "try again later" rather than "this request is wrong".
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def error_code(response: Response) -> str | None:
    """The machine-readable code of an error answer (Okta `errorCode`, Salesforce's first
    `errorCode`, Zendesk `error`, Stripe `error.code`), or None."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    code = body.get("errorCode") or (err.get("code") if isinstance(err, dict) else err)
    return str(code) if code else None


# How a system says "no such record": each adapter passes its own to call_http.
NotFoundTest = Callable[[Response], bool]


def raise_for_http(system: str, response: Response, not_found: NotFoundTest | None = None) -> None:
    """Map an HTTP error answer to RetryableError (429, 5xx, ...), NotFound (the system's own
    "no such record", as `not_found` tells) or PermanentError (any other 4xx)."""
    if response.status_code < 400:
        return
    detail = f"{system} answered {response.status_code}: {error_detail(response)}"
    if response.status_code in RETRYABLE_STATUS or response.status_code >= 500:
        raise RetryableError(detail, retry_after=retry_after_seconds(response.headers))
    if not_found is not None and not_found(response):
        raise NotFound(detail)
    raise PermanentError(detail)


R = TypeVar("R", bound=Response)


def call_http(system: str, send: Callable[[], R], not_found: NotFoundTest | None = None) -> R:
    """Send one request, mapping transport failures and error statuses to opsgate errors."""
    try:
        response = send()
    except (httpx.TimeoutException, httpx.TransportError, TransportError) as exc:
        raise RetryableError(f"{system} unreachable: {exc.__class__.__name__}: {exc}") from exc
    raise_for_http(system, response, not_found)
    return response
