"""Stripe endpoints: charges and refunds, with Stripe's idempotency-key semantics."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tools.sandbox.store import Store, iso_z, record_write, utc_now
from tools.sandbox.stripe.wire import (
    StripeError,
    api_key_from,
    charge_object,
    decode_form,
    error_response,
    format_amount,
    json_response,
    new_id,
    refund_object,
    render,
)

router = APIRouter(prefix="/v1")

REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Parameters Stripe's create-refund endpoint knows; anything else is "unknown parameter".
KNOWN_PARAMS = {
    "amount",
    "charge",
    "currency",
    "customer",
    "expand",
    "instructions_email",
    "metadata",
    "origin",
    "payment_intent",
    "reason",
    "refund_application_fee",
    "reverse_transfer",
}
_INTEGER = re.compile(r"-?\d+")
_CHARGE_SQL = (
    "SELECT ch.*, cu.email, cu.name FROM charges ch JOIN customers cu ON cu.id = ch.customer_id"
    " WHERE ch.id = ?"
)

ApiKey = Annotated[str, Depends(api_key_from)]


@dataclass
class RefundRequest:
    """A create-refund request whose parameters passed validation."""

    charge: str
    amount: int | None = None
    reason: str | None = None
    currency: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one write request produced: the response and how the ledger records it."""

    status_code: int
    text: str
    outcome: str
    headers: dict[str, str] = field(default_factory=dict)


def _store(request: Request) -> Store:
    """The app's Store."""
    store: Store = request.app.state.store
    return store


_CREATED_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _created_filter(query: dict[str, Any]) -> tuple[str, list[int]]:
    """SQL for Stripe's `created` list filter: `created=N` or `created[gte]=N` (gt, lt, lte)."""
    created = query.get("created")
    if created is None:
        return "", []
    if isinstance(created, str):
        created = {"eq": created}
    if not isinstance(created, dict):
        raise StripeError(400, "Invalid created: must be an integer or a hash", param="created")
    sql, args = "", []
    for op, value in created.items():
        symbol = "=" if op == "eq" else _CREATED_OPS.get(op)
        if symbol is None:
            raise StripeError(
                400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]"
            )
        if not isinstance(value, str) or not _INTEGER.fullmatch(value):
            raise StripeError(
                400, f"Invalid integer: {value}", param="created", code="parameter_invalid_integer"
            )
        sql += f" AND ch.created {symbol} ?"
        args.append(int(value))
    return sql, args


@router.get("/charges")
def list_charges(request: Request, _key: ApiKey) -> Response:
    """GET /v1/charges (customer, created[gte|gt|lte|lt], limit, starting_after): a Stripe list
    object, newest first."""
    query = decode_form(request.url.query.encode())
    limit = query.get("limit", "10")
    if not isinstance(limit, str) or not _INTEGER.fullmatch(limit) or not 1 <= int(limit) <= 100:
        raise StripeError(
            400,
            "Invalid limit: must be an integer between 1 and 100",
            param="limit",
            code="parameter_invalid_integer",
        )
    sql = _CHARGE_SQL.removesuffix(" WHERE ch.id = ?") + " WHERE 1 = 1"
    args: list[Any] = []
    customer = query.get("customer")
    if customer:
        sql += " AND ch.customer_id = ?"
        args.append(str(customer))
    more, more_args = _created_filter(query)
    sql, args = sql + more, args + more_args
    after = query.get("starting_after")
    if after:
        sql += " AND (ch.created, ch.id) < (SELECT created, id FROM charges WHERE id = ?)"
        args.append(str(after))
    with _store(request).connect() as conn:
        rows = conn.execute(
            sql + " ORDER BY ch.created DESC, ch.id DESC LIMIT ?", (*args, int(limit) + 1)
        )
        data = [charge_object(row) for row in rows.fetchall()]
    body = {
        "object": "list",
        "data": data[: int(limit)],
        "has_more": len(data) > int(limit),
        "url": "/v1/charges",
    }
    return json_response(200, render(body))


@router.get("/charges/{charge_id}")
def retrieve_charge(charge_id: str, request: Request, _key: ApiKey) -> Response:
    """GET /v1/charges/{id}."""
    with _store(request).connect() as conn:
        row = conn.execute(_CHARGE_SQL, (charge_id,)).fetchone()
    if row is None:
        raise StripeError(
            404, f"No such charge: '{charge_id}'", code="resource_missing", param="id"
        )
    return json_response(200, render(charge_object(row)))


@router.get("/refunds/{refund_id}")
def retrieve_refund(refund_id: str, request: Request, _key: ApiKey) -> Response:
    """GET /v1/refunds/{id}."""
    with _store(request).connect() as conn:
        row = conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
    if row is None:
        raise StripeError(
            404, f"No such refund: '{refund_id}'", code="resource_missing", param="id"
        )
    return json_response(200, render(refund_object(row)))


@router.get("/refunds")
def list_refunds(
    request: Request,
    _key: ApiKey,
    charge: str | None = None,
    limit: str = "10",
    starting_after: str | None = None,
) -> Response:
    """GET /v1/refunds: a Stripe list object, newest first."""
    if not _INTEGER.fullmatch(limit) or not 1 <= int(limit) <= 100:
        raise StripeError(
            400,
            "Invalid limit: must be an integer between 1 and 100",
            param="limit",
            code="parameter_invalid_integer",
        )
    sql = "SELECT * FROM refunds WHERE (? IS NULL OR charge_id = ?)"
    args: list[Any] = [charge, charge]
    if starting_after:
        sql += " AND rowid < (SELECT rowid FROM refunds WHERE id = ?)"
        args.append(starting_after)
    with _store(request).connect() as conn:
        rows = conn.execute(sql + " ORDER BY rowid DESC LIMIT ?", (*args, int(limit) + 1))
        data = [refund_object(row) for row in rows.fetchall()]
    body = {
        "object": "list",
        "data": data[: int(limit)],
        "has_more": len(data) > int(limit),
        "url": "/v1/refunds",
    }
    return json_response(200, render(body))


@router.post("/refunds")
async def create_refund(request: Request) -> Response:
    """POST /v1/refunds, honouring the Idempotency-Key header."""
    params = decode_form(await request.body())
    key = request.headers.get("idempotency-key")
    api_key: str | None = None
    auth_error: StripeError | None = None
    try:
        api_key = api_key_from(request)
    except StripeError as exc:
        auth_error = exc
    store = _store(request)

    def run() -> Outcome:
        """Decide and apply the write in one transaction, ledger entry included."""
        with store.transaction() as conn:
            if auth_error is not None or api_key is None:
                err = auth_error or StripeError(401, "Unauthenticated")
                result = Outcome(err.status_code, render(err.body), "rejected")
            else:
                # Keys are scoped per API key, as Stripe scopes them per account.
                result = _idempotent(conn, f"sk:{api_key}", key, request.url.path, params)
            record_write(
                conn,
                system="stripe",
                method="POST",
                path=request.url.path,
                idempotency_key=key,
                body=params,
                status_code=result.status_code,
                outcome=result.outcome,
            )
        return result

    result = await run_in_threadpool(run)
    if key is not None:
        result.headers["Idempotency-Key"] = key
    return json_response(result.status_code, result.text, result.headers)


def _idempotent(
    conn: sqlite3.Connection, scope: str, key: str | None, path: str, params: dict[str, Any]
) -> Outcome:
    """Replay a stored result for the key, refuse a reused key, or execute and save."""
    canonical = json.dumps(params, sort_keys=True)
    if key is not None:
        stored = conn.execute(
            "SELECT * FROM idempotency WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        if stored is not None:
            if (stored["method"], stored["path"], stored["params"]) != ("POST", path, canonical):
                return _key_reused(key)
            replay = {"Idempotent-Replayed": "true"}
            return Outcome(stored["status_code"], stored["response"], "replayed", replay)
    try:
        refund = _refund(conn, _validate(params))
        result, saved = Outcome(200, render(refund), "applied"), True
    except StripeError as exc:
        result, saved = Outcome(exc.status_code, render(exc.body), "rejected"), exc.saved
    if key is not None and saved:
        conn.execute(
            "INSERT INTO idempotency (scope, key, method, path, params, status_code, response,"
            " created_at) VALUES (?, ?, 'POST', ?, ?, ?, ?, ?)",
            (scope, key, path, canonical, result.status_code, result.text, iso_z(utc_now())),
        )
    return result


def _key_reused(key: str) -> Outcome:
    """The idempotency_error Stripe returns when a key is reused with other parameters."""
    exc = StripeError(
        400,
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.",
        type_="idempotency_error",
        saved=False,
    )
    return Outcome(exc.status_code, render(exc.body), "rejected")


def _invalid(message: str, param: str, code: str | None = None) -> StripeError:
    """A request-validation error (never saved under an idempotency key)."""
    return StripeError(400, message, param=param, code=code, saved=False)


def _scalar(params: dict[str, Any], name: str) -> str | None:
    """A string parameter; Stripe treats an empty string as unset."""
    value = params.get(name)
    if isinstance(value, dict | list):
        raise _invalid(f"Invalid {name}: must be a string", name, "parameter_invalid_string")
    return value or None


def _validate(params: dict[str, Any]) -> RefundRequest:
    """Check the create-refund parameters' shape, as Stripe does before executing."""
    for name in params:
        if name not in KNOWN_PARAMS:
            raise _invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")
    charge, payment_intent = _scalar(params, "charge"), _scalar(params, "payment_intent")
    if payment_intent and not charge:
        # The sandbox keeps no PaymentIntents: finding none is an execution-time 404.
        raise StripeError(
            404,
            f"No such payment_intent: '{payment_intent}'",
            code="resource_missing",
            param="payment_intent",
        )
    if not charge:
        raise _invalid(
            "One of the following params should be provided for this request: payment_intent"
            " or charge.",
            "charge",
            "parameter_missing",
        )
    request = RefundRequest(charge=charge, reason=_scalar(params, "reason"))
    amount = _scalar(params, "amount")
    if amount is not None:
        if not _INTEGER.fullmatch(amount):
            raise _invalid(f"Invalid integer: {amount}", "amount", "parameter_invalid_integer")
        if int(amount) < 1:
            raise _invalid("Invalid positive integer", "amount", "parameter_invalid_integer")
        request.amount = int(amount)
    if request.reason is not None and request.reason not in REASONS:
        raise _invalid(
            "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
            "reason",
        )
    currency = _scalar(params, "currency")
    request.currency = currency.lower() if currency else None
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _invalid("Invalid metadata: must be a hash of key-value pairs", "metadata")
    # An empty value unsets a metadata key in Stripe, so it is not stored.
    request.metadata = {k: v for k, v in metadata.items() if isinstance(v, str) and v}
    return request


def _refund(conn: sqlite3.Connection, req: RefundRequest) -> dict[str, Any]:
    """Create the refund and update the charge; business-rule errors are StripeErrors."""
    charge = conn.execute(_CHARGE_SQL, (req.charge,)).fetchone()
    if charge is None:
        raise StripeError(
            404, f"No such charge: '{req.charge}'", code="resource_missing", param="charge"
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise StripeError(
            400,
            f"Charge {req.charge} has already been refunded.",
            code="charge_already_refunded",
        )
    if req.currency is not None and req.currency != charge["currency"]:
        raise StripeError(
            400,
            f"Currency {req.currency} does not match the charge's currency {charge['currency']}.",
            param="currency",
        )
    amount = remaining if req.amount is None else req.amount
    if amount > remaining:
        raise StripeError(400, _too_large(amount, charge), param="amount")
    refund_id = new_id("re_")
    conn.execute(
        "INSERT INTO refunds (id, charge_id, amount, currency, reason, metadata, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            refund_id,
            req.charge,
            amount,
            charge["currency"],
            req.reason,
            json.dumps(req.metadata),
            int(time.time()),
        ),
    )
    conn.execute(
        "UPDATE charges SET amount_refunded = amount_refunded + ? WHERE id = ?",
        (amount, req.charge),
    )
    row = conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
    return refund_object(row)


def _too_large(amount: int, charge: sqlite3.Row) -> str:
    """Stripe's message for a refund larger than what is left on the charge."""
    currency = charge["currency"]
    asked = format_amount(amount, currency)
    if charge["amount_refunded"] == 0:
        total = format_amount(charge["amount"], currency)
        return f"Refund amount ({asked}) is greater than charge amount ({total})"
    left = format_amount(charge["amount"] - charge["amount_refunded"], currency)
    return f"Refund amount ({asked}) is greater than unrefunded amount on charge ({left})"


def stripe_error_handler(_request: Request, exc: Exception) -> Response:
    """Render a StripeError raised by a read endpoint or the auth dependency."""
    assert isinstance(exc, StripeError)
    return error_response(exc)
