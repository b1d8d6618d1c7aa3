"""Stripe's wire format: error objects, API-key auth, form decoding and object rendering."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import sqlite3
import string
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import Response

_ALPHANUM = string.ascii_letters + string.digits
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
# Currencies Stripe counts in whole units (no minor unit), for rendering amounts in messages.
_ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx"}
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}

NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)


class StripeError(Exception):
    """Raised when a Stripe request fails; carries the HTTP status and Stripe's error object."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        saved: bool = True,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        # Stripe saves an idempotent result only once the endpoint began executing: request
        # validation failures (saved=False) are not replayed, business errors are.
        self.saved = saved
        error: dict[str, Any] = {"message": message, "type": type_}
        if code is not None:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param is not None:
            error["param"] = param
        self.body: dict[str, Any] = {"error": error}


def new_id(prefix: str) -> str:
    """A Stripe-style object id such as `re_3PqLk...`."""
    return prefix + "".join(secrets.choice(_ALPHANUM) for _ in range(24))


def render(body: dict[str, Any]) -> str:
    """Serialize a response body the way Stripe does (pretty-printed JSON)."""
    return json.dumps(body, indent=2)


def json_response(status_code: int, text: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the Request-Id header every Stripe response carries."""
    all_headers = {"Request-Id": new_id("req_")[:18], **(headers or {})}
    return Response(text, status_code, headers=all_headers, media_type="application/json")


def error_response(exc: StripeError) -> Response:
    """The HTTP response for a StripeError."""
    return json_response(exc.status_code, render(exc.body))


def _mask(key: str) -> str:
    """Mask an API key for error messages, as Stripe does."""
    return key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else key


def api_key_from(request: Request) -> str:
    """The caller's secret key from Bearer or Basic auth; raises a 401 StripeError otherwise."""
    header = request.headers.get("authorization", "").strip()
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        # curl -u sk_test_...: sends the key as the Basic username with an empty password.
        try:
            value = base64.b64decode(value, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            value = ""
    elif scheme.lower() != "bearer":
        value = ""
    if not value:
        raise StripeError(401, NO_KEY_MESSAGE, saved=False)
    if not value.startswith("sk_"):
        raise StripeError(401, f"Invalid API Key provided: {_mask(value)}", saved=False)
    return value


def decode_form(raw: bytes) -> dict[str, Any]:
    """Decode Stripe's form encoding (`metadata[k]=v`, `expand[]=x`) into nested values."""
    params: dict[str, Any] = {}
    for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        head, _, rest = name.partition("[")
        path = [head] + _BRACKETS.findall("[" + rest) if rest else [head]
        _assign(params, path, value)
    return params


def _assign(target: dict[str, Any], path: list[str], value: str) -> None:
    """Place one decoded form value at its bracketed path."""
    node: Any = target
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        default: Any = [] if nxt == "" else {}
        if isinstance(node, list):
            node.append(default)
            node = node[-1]
        else:
            existing = node.get(part)
            if not isinstance(existing, dict | list):
                node[part] = default
            node = node[part]
    last = path[-1]
    if isinstance(node, list):
        node.append(value)
    elif last == "" and isinstance(node, dict):
        node.setdefault("", []).append(value)
    else:
        node[last] = value


def format_amount(amount: int, currency: str) -> str:
    """Render minor units as Stripe does in messages, e.g. `$25.00`."""
    cur = currency.lower()
    number = f"{amount}" if cur in _ZERO_DECIMAL else f"{amount / 100:.2f}"
    symbol = _SYMBOLS.get(cur)
    return f"{symbol}{number}" if symbol else f"{number} {cur.upper()}"


def charge_object(row: sqlite3.Row) -> dict[str, Any]:
    """A Stripe Charge object from a charges row joined with its customer."""
    return {
        "id": row["id"],
        "object": "charge",
        "amount": row["amount"],
        "amount_captured": row["amount"],
        "amount_refunded": row["amount_refunded"],
        "balance_transaction": None,
        "billing_details": {
            "address": None,
            "email": row["email"],
            "name": row["name"],
            "phone": None,
        },
        "captured": True,
        "created": row["created"],
        "currency": row["currency"],
        "customer": row["customer_id"],
        "description": row["description"],
        "disputed": bool(row["disputed"]),
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": None,
        "receipt_email": row["email"],
        "refunded": row["amount_refunded"] >= row["amount"],
        "status": "succeeded",
    }


def refund_object(row: sqlite3.Row) -> dict[str, Any]:
    """A Stripe Refund object from a refunds row."""
    return {
        "id": row["id"],
        "object": "refund",
        "amount": row["amount"],
        "balance_transaction": None,
        "charge": row["charge_id"],
        "created": row["created"],
        "currency": row["currency"],
        "metadata": json.loads(row["metadata"]),
        "payment_intent": None,
        "reason": row["reason"],
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
