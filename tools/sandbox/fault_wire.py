"""The error responses injected faults answer with, in each system's own shape."""

from __future__ import annotations

import secrets
import time
from http import HTTPStatus

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tools.sandbox.okta.routes import OktaError
from tools.sandbox.salesforce.model import SalesforceError
from tools.sandbox.stripe.wire import StripeError, json_response, render

STRIPE_RATE_LIMIT = (
    "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
    "requests."
)
# Zendesk answers a rate-limited request in plain text, with Retry-After.
ZENDESK_RATE_LIMIT = "Number of allowed API requests per minute exceeded"
OKTA_RATE_LIMIT = "API call exceeded rate limit due to too many requests."
OKTA_LIMIT = 600


def fault_response(system: str, status: int, retry_after: int) -> Response:
    """A 5xx, 504 or 429 (with Retry-After) as `system` would send it."""
    headers = {"Retry-After": str(retry_after)} if status == 429 else {}
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # an unassigned 5xx code
        phrase = "Server Error"
    if system == "stripe":
        if status == 429:
            exc = StripeError(429, STRIPE_RATE_LIMIT, code="rate_limit", saved=False)
        else:
            exc = StripeError(status, "An unknown error occurred", type_="api_error", saved=False)
        return json_response(status, render(exc.body), headers)
    if system == "zendesk":
        if status == 429:
            limits = {"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "0"}
            return PlainTextResponse(ZENDESK_RATE_LIMIT, 429, headers={**headers, **limits})
        body = {"error": phrase.replace(" ", ""), "description": f"{phrase}. Please try again."}
        return JSONResponse(body, status)
    if system == "salesforce":
        return JSONResponse(_salesforce(status, phrase).body, status, headers=headers)
    if status == 429:
        reset = str(int(time.time()) + max(retry_after, 1))
        headers |= {
            "X-Rate-Limit-Limit": str(OKTA_LIMIT),
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": reset,
        }
        okta = OktaError(429, "E0000047", OKTA_RATE_LIMIT)
    else:
        okta = OktaError(status, "E0000009", "Internal Server Error")
    return JSONResponse(okta.body, status, headers=headers)


def _salesforce(status: int, phrase: str) -> SalesforceError:
    """Salesforce's error array for a fault status."""
    if status == 429:
        return SalesforceError(429, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    if status == 500:
        ref = f"{secrets.randbelow(10**9)}-{secrets.randbelow(10**6)} ({secrets.randbelow(10**9)})"
        return SalesforceError(
            500,
            "UNKNOWN_EXCEPTION",
            f"An unexpected error occurred. Please include this ErrorId if you contact support: "
            f"{ref}",
        )
    return SalesforceError(status, "SERVER_UNAVAILABLE", f"{phrase}: please try again later")
