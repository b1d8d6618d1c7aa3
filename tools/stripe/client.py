"""Stripe adapter: stripe-python pointed at OPSGATE_STRIPE_API_BASE (the sandbox or Stripe)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

import stripe
from urllib3.exceptions import HTTPError

from app.core.clients import per_process
from app.errors import ConflictError, NotFound, PermanentError, RetryableError
from app.settings import get_settings
from tools.base import retry_after_seconds
from tools.http import pool_manager

SERVICE_IDENTITY = "stripe:restricted-key/refunds"


class PooledHTTPClient(stripe.HTTPClient):
    """stripe-python's transport on urllib3's pool (tools/http.py says why not httpx): the
    SDK still builds every request (form encoding, Idempotency-Key, Stripe-Version) and
    reads every answer; this only moves the bytes."""

    name = "urllib3"

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        # Stripe's own CA bundle, as its bundled clients verify api.stripe.com.
        self._pool = pool_manager(base_url, timeout, ca_certs=stripe.ca_bundle_path)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        """One request; a transport failure is the SDK's APIConnectionError."""
        try:
            answer = self._pool.request(
                method, url, body=post_data, headers=dict(headers or {}), redirect=False
            )
        except HTTPError as exc:
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"Unexpected error communicating with Stripe. "
                f"(Network error: {exc.__class__.__name__}: {exc})",
                should_retry=True,
            ) from exc
        # The SDK's declared `str` is what it decodes; its own clients hand it bytes too.
        return answer.data, answer.status, answer.headers  # type: ignore[return-value]

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()


def _client() -> stripe.StripeClient:
    settings = get_settings()
    # Retries are opsgate's, explicit in tasks/base.py (backoff with jitter, Retry-After, the
    # job's budget; not `autoretry_for`), never stacked on the SDK's own.
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base.rstrip("/")},
        max_network_retries=0,
        http_client=PooledHTTPClient(settings.stripe_api_base, settings.http_timeout_seconds),
    )


def client() -> stripe.StripeClient:
    """This process's Stripe client."""
    return per_process("stripe", _client)


def _map_error(exc: stripe.StripeError) -> Exception:
    if isinstance(exc, stripe.IdempotencyError):
        return ConflictError(f"stripe idempotency conflict: {exc.user_message or exc}")
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        headers = dict(exc.headers or {})
        return RetryableError(
            f"stripe: {exc.__class__.__name__}: {exc}", retry_after=retry_after_seconds(headers)
        )
    if exc.http_status is not None and exc.http_status >= 500:
        return RetryableError(f"stripe answered {exc.http_status}: {exc}")
    code = f" ({exc.code})" if exc.code else ""
    if exc.code == "resource_missing":  # Stripe's "No such charge" (HTTP 404)
        return NotFound(f"stripe rejected the request{code}: {exc.user_message or exc}")
    return PermanentError(f"stripe rejected the request{code}: {exc.user_message or exc}")


def _call(method: str, path: str, **params: Any) -> Any:
    """One API request through the SDK (its form encoding, headers, Idempotency-Key and error
    classes), answered as the JSON it sent: building StripeObjects only to turn them back into
    dicts was a fifth of the SDK's CPU per call."""
    try:
        return client().raw_request(method, path, **params).data
    except stripe.StripeError as exc:
        raise _map_error(exc) from exc


def get_charge(charge_id: str) -> dict[str, Any]:
    """GET /v1/charges/{id}."""
    return dict(_call("get", f"/v1/charges/{quote_plus(charge_id)}"))


def list_charges(customer: str, created_gte: int | None = None) -> list[dict[str, Any]]:
    """GET /v1/charges?customer=...&created[gte]=...: a customer's charges, newest first (the
    first page of 100 is enough for the double-charge window it is read for)."""
    params: dict[str, Any] = {"customer": customer, "limit": 100}
    if created_gte is not None:
        params["created"] = {"gte": created_gte}
    return list(_call("get", "/v1/charges", **params)["data"])


def list_refunds(charge_id: str) -> list[dict[str, Any]]:
    """GET /v1/refunds?charge=...: the refunds already made on a charge."""
    return list(_call("get", "/v1/refunds", charge=charge_id, limit=100)["data"])


def refund(
    charge_id: str, amount: int, reason: str, *, idempotency_key: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """POST /v1/refunds with an Idempotency-Key, so a retry replays instead of refunding twice."""
    created = _call(
        "post",
        "/v1/refunds",
        charge=charge_id,
        amount=amount,
        reason=reason,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    return dict(created)
