"""Stripe adapter: Stripe's v1 API over httpx, at OPSGATE_STRIPE_API_BASE (the sandbox or Stripe).

The requests are the ones stripe-python sends (tests/unit/tools/test_stripe_wire.py compares
them byte for byte): form-encoded parameters with Stripe's bracketed keys, `Authorization:
Bearer`, a pinned `Stripe-Version`, and an `Idempotency-Key` on every POST. The SDK itself is
not used: its typed resources for the whole API cost ~27 MB resident in a fresh interpreter
(~5 MB beyond what a worker loads anyway), for four requests httpx, which every other adapter
uses, makes as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx

from app.core.clients import per_process
from app.errors import ConflictError, NotFound, PermanentError, RetryableError
from app.settings import get_settings
from tools.base import retry_after_seconds

SERVICE_IDENTITY = "stripe:restricted-key/refunds"
# The API version stripe-python 16.1 pins, which this adapter's reads were written against;
# without the header Stripe answers in the account's default version, whatever that is.
STRIPE_API_VERSION = "2026-10-28.endive"


def _client() -> httpx.Client:
    settings = get_settings()
    # Retries are opsgate's, explicit in tasks/base.py (backoff with jitter, Retry-After, the
    # job's budget; not `autoretry_for`): httpx retries nothing by itself.
    return httpx.Client(
        base_url=f"{settings.stripe_api_base.rstrip('/')}/v1",
        headers={
            "Authorization": f"Bearer {settings.stripe_api_key.get_secret_value()}",
            "Stripe-Version": STRIPE_API_VERSION,
        },
        timeout=settings.http_timeout_seconds,
    )


def client() -> httpx.Client:
    """This process's Stripe client."""
    return per_process("stripe", _client)


def encode(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding of nested parameters: `metadata[k]=v`, `created[gte]=1`,
    lists as `expand[0]=x`, booleans as `true`/`false`, None left out (stripe-python's
    `_api_encode`; no library but the SDK does this, hence by hand)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs += encode(value, name)
        elif isinstance(value, list | tuple):
            pairs += encode({str(i): item for i, item in enumerate(value)}, name)
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs


def form(params: Mapping[str, Any]) -> str:
    """A request body of encoded parameters, brackets left readable as stripe-python leaves
    them (in a query string httpx escapes them, as it does for the SDK)."""
    return urlencode(encode(params)).replace("%5B", "[").replace("%5D", "]")


def _error(response: httpx.Response) -> Exception:
    """Stripe's error answer as an opsgate error, by status and Stripe's error type and code."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    status = response.status_code
    code = err.get("code")
    message = err.get("message") or response.text[:300]
    if status == 400 and err.get("type") == "idempotency_error":
        return ConflictError(f"stripe idempotency conflict: {message}")
    # 409: a request with the same Idempotency-Key is still in flight; a retry replays its
    # result (stripe-python's own retry policy retries 409 too). A 400 `rate_limit` is how
    # Stripe once answered rate limits.
    if status in (409, 429) or status >= 500 or (status == 400 and code == "rate_limit"):
        return RetryableError(
            f"stripe answered {status}: {message}",
            retry_after=retry_after_seconds(response.headers),
        )
    shown = f" ({code})" if code else ""
    if code == "resource_missing":  # Stripe's "No such charge" (HTTP 404)
        return NotFound(f"stripe rejected the request{shown}: {message}")
    return PermanentError(f"stripe rejected the request{shown}: {message}")


def _call(send: Callable[[], httpx.Response]) -> dict[str, Any]:
    """Send one request; Stripe's answer as a dict, or the opsgate error for its failure."""
    try:
        response = send()
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise RetryableError(f"stripe unreachable: {exc.__class__.__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise _error(response)
    try:
        body: Any = response.json()
    except ValueError as exc:
        raise PermanentError(f"stripe answered {response.status_code} without JSON") from exc
    if not isinstance(body, dict):
        raise PermanentError(f"stripe answered {response.status_code} with no object")
    return body


def _list(path: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    page = _call(lambda: client().get(path, params=tuple(encode(params))))
    return [dict(item) for item in page.get("data") or []]


def get_charge(charge_id: str) -> dict[str, Any]:
    """GET /v1/charges/{id}."""
    return _call(lambda: client().get(f"/charges/{quote_plus(charge_id)}"))


def list_charges(customer: str, created_gte: int | None = None) -> list[dict[str, Any]]:
    """GET /v1/charges?customer=...&created[gte]=...: a customer's charges, newest first (the
    first page of 100 is enough for the double-charge window it is read for)."""
    params: dict[str, Any] = {"customer": customer, "limit": 100}
    if created_gte is not None:
        params["created"] = {"gte": created_gte}
    return _list("/charges", params)


def list_refunds(charge_id: str) -> list[dict[str, Any]]:
    """GET /v1/refunds?charge=...: the refunds already made on a charge."""
    return _list("/refunds", {"charge": charge_id, "limit": 100})


def refund(
    charge_id: str, amount: int, reason: str, *, idempotency_key: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """POST /v1/refunds with an Idempotency-Key, so a retry replays instead of refunding twice."""
    body = form({"charge": charge_id, "amount": amount, "reason": reason, "metadata": metadata})
    return _call(
        lambda: client().post(
            "/refunds",
            content=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Idempotency-Key": idempotency_key,
            },
        )
    )
