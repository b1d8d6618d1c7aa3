"""The sandbox FastAPI app: Stripe, Zendesk, Salesforce and Okta emulations, the scripted
OpenAI model server, the ledger, fault injection and the control endpoints."""

from __future__ import annotations

import os
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tools.sandbox import bulk, faults, world
from tools.sandbox.llm import routes as model_routes
from tools.sandbox.okta import routes as okta_routes
from tools.sandbox.salesforce import model as salesforce_model
from tools.sandbox.salesforce import routes as salesforce_routes
from tools.sandbox.seed import Ticket, add_ticket, reset, seed_missing
from tools.sandbox.store import Store, iso_z, list_writes, utc_now
from tools.sandbox.stripe import routes as stripe_routes
from tools.sandbox.stripe.wire import StripeError, error_response
from tools.sandbox.zendesk import routes as zendesk_routes

control = APIRouter(prefix="/_sandbox", tags=["sandbox"])


def _store(request: Request) -> Store:
    """The app's Store."""
    store: Store = request.app.state.store
    return store


@control.get("/health")
def health() -> dict[str, bool]:
    """Liveness probe; tests poll it to know the server is up."""
    return {"ok": True}


@control.get("/ledger")
def ledger(
    request: Request,
    system: str | None = None,
    outcome: Literal["applied", "replayed", "rejected", "noop"] | None = None,
) -> dict[str, Any]:
    """Every write the sandbox received, oldest first."""
    with _store(request).connect() as conn:
        return {"writes": list_writes(conn, system=system, outcome=outcome)}


@control.post("/reset")
def reset_state(request: Request) -> dict[str, bool]:
    """Wipe all state, ledger included, and reseed the demo data (faults stay as they are)."""
    reset(_store(request))
    return {"ok": True}


@control.post("/refund_cases")
def refund_cases(request: Request, count: int = 10, start: int = 0) -> dict[str, Any]:
    """Add `count` refundable tickets (with users, customers and charges) numbered from `start`."""
    if not 1 <= count <= 10_000 or start < 0:
        raise StarletteHTTPException(422, "count must be 1..10000 and start >= 0")
    return {"cases": bulk.as_json(bulk.add_refund_cases(_store(request), count, start))}


class TicketSpec(BaseModel):
    """A ticket to add for a test or an evaluation, with later comments if any."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(gt=0)
    requester_id: int = Field(gt=0)
    subject: str = Field(min_length=1, max_length=500)
    description: str = Field(min_length=1, max_length=20_000)
    status: str = Field("open", pattern="^(new|open|pending|hold|solved|closed)$")
    tags: list[str] = Field(default_factory=list)
    comments: list[dict[str, Any]] = Field(default_factory=list)


class ChargeSpec(BaseModel):
    """A Stripe charge (and its customer) to add or replace for a test or an evaluation."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^ch_[A-Za-z0-9_]+$")
    customer_id: str = Field(pattern=r"^cus_[A-Za-z0-9_]+$")
    customer_email: str = Field(min_length=3, max_length=320)
    customer_name: str = Field("", max_length=200)
    amount: int = Field(gt=0)
    currency: str = Field(pattern="^[a-z]{3}$")
    amount_refunded: int = Field(0, ge=0)
    description: str | None = None
    # Unix seconds, as Stripe reports them; default: one day ago.
    created: int | None = Field(None, gt=0)
    disputed: bool = False


@control.post("/charges")
def add_charges(request: Request, charges: list[ChargeSpec]) -> dict[str, Any]:
    """Add or replace charges and their customers (not a Stripe write: the ledger stays)."""
    now = int(utc_now().timestamp())
    with _store(request).transaction() as conn:
        for spec in charges:
            if spec.amount_refunded > spec.amount:
                raise StarletteHTTPException(422, f"{spec.id}: amount_refunded > amount")
            conn.execute(
                "INSERT INTO customers (id, email, name) VALUES (?, ?, ?) ON CONFLICT(id) DO"
                " UPDATE SET email = excluded.email, name = excluded.name",
                (spec.customer_id, spec.customer_email, spec.customer_name),
            )
            conn.execute(
                "INSERT INTO charges (id, customer_id, amount, amount_refunded, currency,"
                " description, created, disputed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET customer_id = excluded.customer_id,"
                " amount = excluded.amount, amount_refunded = excluded.amount_refunded,"
                " currency = excluded.currency, description = excluded.description,"
                " created = excluded.created, disputed = excluded.disputed",
                (
                    spec.id,
                    spec.customer_id,
                    spec.amount,
                    spec.amount_refunded,
                    spec.currency,
                    spec.description,
                    spec.created or now - 86400,
                    int(spec.disputed),
                ),
            )
    return {"added": [c.id for c in charges]}


@control.post("/tickets")
def add_tickets(request: Request, tickets: list[TicketSpec]) -> dict[str, Any]:
    """Add tickets (not through the Zendesk API, so the ledger of writes stays untouched)."""
    with _store(request).transaction() as conn:
        for spec in tickets:
            if conn.execute("SELECT 1 FROM tickets WHERE id = ?", (spec.id,)).fetchone():
                raise StarletteHTTPException(409, f"ticket {spec.id} exists")
            add_ticket(
                conn,
                Ticket(
                    spec.id,
                    spec.requester_id,
                    spec.subject,
                    spec.description,
                    spec.status,
                    tuple(spec.tags),
                ),
                iso_z(utc_now()),
                [(int(c["author_id"]), str(c["body"])) for c in spec.comments],
            )
    return {"added": [t.id for t in tickets]}


async def _not_found(request: Request, exc: Exception) -> Response:
    """Unknown routes answer in the error shape of the system whose path they are under."""
    assert isinstance(exc, StarletteHTTPException)
    path, status = request.url.path, exc.status_code
    if status not in (404, 405):
        return await http_exception_handler(request, exc)
    if model_routes.owns(path):
        # The openai SDK expects OpenAI's shape (e.g. GET on /v1/chat/completions).
        return await model_routes.not_found(request, exc)
    if path.startswith("/v1/"):
        # stripe-python expects Stripe's shape.
        message = (
            f"Unrecognized request URL ({request.method}: {path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/."
        )
        return error_response(StripeError(404, message, saved=False))
    if path.startswith("/services/data/"):
        error = salesforce_model.not_found()
        if status == 405:
            allowed = "GET,PATCH" if "/sobjects/" in path else "GET"
            message = f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}"
            error = salesforce_model.SalesforceError(405, "METHOD_NOT_ALLOWED", message)
        return JSONResponse(error.body, status_code=error.status_code)
    if path.startswith("/api/v1/"):
        okta = okta_routes.OktaError(404, "E0000007", f"Not found: Resource not found: {path}")
        if status == 405:
            summary = "The endpoint does not support the provided HTTP method"
            okta = okta_routes.OktaError(405, "E0000022", summary)
        return JSONResponse(okta.body, status_code=okta.status_code)
    return await http_exception_handler(request, exc)


class SandboxApp(FastAPI):
    """FastAPI with the fault layer outermost, so a fault can withhold the whole response.

    The model server's paths bypass it: they share Stripe's /v1/ prefix, but a Stripe (or "*")
    fault is not meant to break the planner's LLM calls, whose failures are scripted instead.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not model_routes.owns(scope["path"]):
            await self.state.faults.handle(scope, receive, send, super().__call__)
        else:
            await super().__call__(scope, receive, send)


def create_app(db_path: str, *, seed_if_empty: bool = True) -> FastAPI:
    """Build the sandbox over the SQLite file at `db_path`, seeding whatever is empty.

    Faults in OPSGATE_SANDBOX_FAULTS (a fault spec or a list of them) are active from the start.
    """
    specs = faults.parse_env(os.environ.get(faults.ENV_VAR))
    store = Store(db_path)
    if seed_if_empty:
        # Under the write lock: two processes may start on one file.
        with store.transaction() as conn:
            seed_missing(conn)
    app = SandboxApp(
        title="opsgate sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.store = store
    app.state.faults = faults.Faults(store, specs)
    app.include_router(stripe_routes.router)
    app.include_router(zendesk_routes.router)
    app.include_router(salesforce_routes.router)
    app.include_router(okta_routes.router)
    model_routes.install(app)
    app.include_router(control)
    app.include_router(world.router)
    app.include_router(faults.router)
    app.add_exception_handler(StripeError, stripe_routes.stripe_error_handler)
    app.add_exception_handler(zendesk_routes.ZendeskError, zendesk_routes.zendesk_error_handler)
    app.add_exception_handler(
        salesforce_model.SalesforceError, salesforce_routes.salesforce_error_handler
    )
    app.add_exception_handler(okta_routes.OktaError, okta_routes.okta_error_handler)
    app.add_exception_handler(StarletteHTTPException, _not_found)
    return app
