"""Stripe adapter: stripe-python pointed at OPSGATE_STRIPE_API_BASE (the sandbox or Stripe)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import stripe

from app.core.clients import per_process
from app.errors import ConflictError, NotFound, PermanentError, RetryableError
from app.settings import get_settings
from tools.base import retry_after_seconds

if TYPE_CHECKING:
    from stripe.params._charge_list_params import ChargeListParams

SERVICE_IDENTITY = "stripe:restricted-key/refunds"


def _client() -> stripe.StripeClient:
    settings = get_settings()
    # Retries are opsgate's, explicit in tasks/base.py (backoff with jitter, Retry-After, the
    # job's budget; not `autoretry_for`), never stacked on the SDK's own.
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base.rstrip("/")},
        max_network_retries=0,
        http_client=stripe.HTTPXClient(
            timeout=settings.http_timeout_seconds, allow_sync_methods=True
        ),
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


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def get_charge(charge_id: str) -> dict[str, Any]:
    """GET /v1/charges/{id}."""
    try:
        return _plain(client().v1.charges.retrieve(charge_id))
    except stripe.StripeError as exc:
        raise _map_error(exc) from exc


def list_charges(customer: str, created_gte: int | None = None) -> list[dict[str, Any]]:
    """GET /v1/charges?customer=...&created[gte]=...: a customer's charges, newest first (the
    first page of 100 is enough for the double-charge window it is read for)."""
    params: ChargeListParams = {"customer": customer, "limit": 100}
    if created_gte is not None:
        params["created"] = {"gte": created_gte}
    try:
        page = client().v1.charges.list(params=params)
    except stripe.StripeError as exc:
        raise _map_error(exc) from exc
    return [_plain(c) for c in page.data]


def list_refunds(charge_id: str) -> list[dict[str, Any]]:
    """GET /v1/refunds?charge=...: the refunds already made on a charge."""
    try:
        page = client().v1.refunds.list(params={"charge": charge_id, "limit": 100})
    except stripe.StripeError as exc:
        raise _map_error(exc) from exc
    return [_plain(r) for r in page.data]


def refund(
    charge_id: str, amount: int, reason: str, *, idempotency_key: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """POST /v1/refunds with an Idempotency-Key, so a retry replays instead of refunding twice."""
    try:
        created = client().v1.refunds.create(
            params={
                "charge": charge_id,
                "amount": amount,
                "reason": reason,
                "metadata": metadata,
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.StripeError as exc:
        raise _map_error(exc) from exc
    return _plain(created)
