"""The reviewer console under /ui: sign-in, the queue, an item and its decisions.

Server-rendered (Jinja2, autoescaped) with no script at all, so the Content-Security-Policy
allows none. Every state change is a POST carrying the session's CSRF token; decisions go
through `app.human.decisions`, the same code as `POST /v1/escalations/{id}/decision`, with the
reviewer taken from the session, never from the form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ConflictError, Forbidden, InputError, Unauthorized, one_line
from app.human import decisions
from app.jobs import outbox
from app.settings import get_settings
from app.ui import bulk, live, operators, queue, sessions
from app.ui import item as items
from app.ui.pages import (
    CsrfRefused,
    ReviewerDep,
    SessionDep,
    SignInRequired,
    render,
)
from app.ui.pages import checked_form as _checked_form
from app.ui.pages import field as _field

log = structlog.get_logger(__name__)
HERE = Path(__file__).parent

# No script, no frames, no third-party anything; forms post only back to the console.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only a path of the console itself: never an absolute or protocol-relative URL.
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/escalations"


def _cookie_flags() -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": get_settings().environment != "development",
        "path": "/ui",
    }


# ---- sign-in --------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    """The console starts at the queue."""
    return RedirectResponse("/ui/escalations", status_code=303)


def _sign_in_page(
    request: Request, target: str, message: str | None = None, status: int = 200
) -> HTMLResponse:
    nonce, token = sessions.new_signin_nonce()
    page = render(
        request,
        "sign_in.html",
        {
            "next": _safe_next(target),
            "signin_token": token,
            "message": message,
            "oidc": get_settings().oidc_configured,
        },
        status,
    )
    page.set_cookie(sessions.PRE_COOKIE, nonce, max_age=900, **_cookie_flags())
    return page


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, next: str = "/ui/escalations") -> HTMLResponse:  # noqa: A002
    """The sign-in form: an API key, exchanged once for a session."""
    return _sign_in_page(request, next)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, session: SessionDep) -> Response:
    """Check the key, open a session, set its cookie; the key itself is not kept."""
    form = await request.form()
    target = _safe_next(_field(form, "next"))
    if not sessions.signin_ok(
        request.cookies.get(sessions.PRE_COOKIE), _field(form, "signin_token")
    ):
        log.warning("ui.sign_in_refused", why="csrf", client=_client(request))
        return _sign_in_page(
            request, target, "The sign-in form expired or was not ours; try again.", 403
        )
    try:
        cookie, reviewer = await run_in_threadpool(
            _open_session, session, _field(form, "api_key") or "", request
        )
    except (Unauthorized, Forbidden) as exc:
        log.warning("ui.sign_in_refused", why=str(exc), client=_client(request))
        status = 401 if isinstance(exc, Unauthorized) else 403
        return _sign_in_page(request, target, f"Sign-in refused: {exc}.", status)
    log.info("ui.sign_in", principal=reviewer.principal.name, role=reviewer.principal.role)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        sessions.COOKIE, cookie, max_age=int(get_settings().ui_session_ttl), **_cookie_flags()
    )
    response.delete_cookie(sessions.PRE_COOKIE, path="/ui")
    return response


def _open_session(session: Session, key: str, request: Request) -> tuple[str, sessions.Reviewer]:
    cookie, reviewer = sessions.sign_in(
        session,
        key,
        client=_client(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    session.commit()
    return cookie, reviewer


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


@router.post("/sign-out")
async def sign_out(request: Request, session: SessionDep, reviewer: ReviewerDep) -> Response:
    """End the session (a POST with the CSRF token, like every change)."""
    await _checked_form(request, reviewer)
    await run_in_threadpool(sessions.sign_out, session, reviewer)
    log.info("ui.sign_out", principal=reviewer.principal.name)
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/ui")
    return response


# ---- the queue and an item ------------------------------------------------------------------


@router.get("/escalations", response_class=HTMLResponse)
def queue_page(
    request: Request,
    session: SessionDep,
    reviewer: ReviewerDep,
    workflow: str = "",
    reason: str = "",
    claim: str = "",
    q: str = "",
    page: int = 1,
) -> HTMLResponse:
    """Open escalations, oldest first, filtered and paginated."""
    wanted = queue.QueueFilter(
        workflow=workflow[:64],
        reason=reason[:48],
        claim=claim if claim in ("mine", "unclaimed") else "",  # type: ignore[arg-type]
        q=q[:200],
        page=max(1, page),
    )
    found = queue.page(session, reviewer.principal, wanted)
    return render(
        request,
        "queue.html",
        {"page": found, "wanted": wanted, "link": lambda **c: "?" + urlencode(wanted.query(**c))},
        reviewer=reviewer,
    )


@router.post("/escalations/bulk-approve", response_class=HTMLResponse)
async def bulk_approve(
    request: Request, session: SessionDep, reviewer: ReviewerDep, background: BackgroundTasks
) -> Response:
    """Approve the selected items that may be approved in bulk, each with its own token."""
    form = await _checked_form(request, reviewer)
    selected = []
    for value in form.getlist("item"):
        esc_id, _, seen_hash = str(value).partition(":")
        if esc_id.isdigit():
            selected.append((int(esc_id), seen_hash))
    if not selected or _field(form, "confirm") != "yes":
        message = (
            "Select at least one item."
            if not selected
            else "Tick the confirmation: each selected action is approved exactly as listed."
        )
        return render(
            request, "error.html", {"title": "Nothing approved", "message": message}, 400, reviewer
        )
    result = await run_in_threadpool(
        bulk.approve, session, selected, reviewer.principal, reviewer.actor
    )
    for job_id in result.job_ids:
        background.add_task(outbox.publish_for_job, job_id)
    log.info(
        "ui.bulk_approve",
        principal=reviewer.principal.name,
        approved=result.approved,
        skipped=[esc_id for esc_id, _ in result.skipped],
    )
    return render(request, "bulk.html", {"result": result}, reviewer=reviewer)


@router.get("/escalations/{escalation_id}", response_class=HTMLResponse)
def item_page(
    request: Request, escalation_id: int, session: SessionDep, reviewer: ReviewerDep
) -> HTMLResponse:
    """One escalation: the action, why it is here, the timeline, the decisions."""
    found = items.load(session, escalation_id, reviewer.principal)
    if found is None:
        return _not_found(request, reviewer, escalation_id)
    return _item(request, session, found, reviewer)


def _item(
    request: Request,
    session: Session,
    found: items.Item,
    reviewer: sessions.Reviewer,
    *,
    error: str | None = None,
    status: int = 200,
    reading: live.LiveRead | None = None,
) -> HTMLResponse:
    p = found.proposed
    others = live.same_target(session, found.job.id, p.tool, found.step_args) if p else []
    context = {"item": found, "error": error, "live": reading, "others": others}
    return render(request, "item.html", context, status, reviewer)


@router.post("/escalations/{escalation_id}/read-live", response_class=HTMLResponse)
async def read_live(
    request: Request, escalation_id: int, session: SessionDep, reviewer: ReviewerDep
) -> Response:
    """Read the target records now, as the reviewer, and show them beside the proposal."""
    await _checked_form(request, reviewer)
    return await run_in_threadpool(_read_live, request, escalation_id, session, reviewer)


def _read_live(
    request: Request, escalation_id: int, session: Session, reviewer: sessions.Reviewer
) -> Response:
    found = items.load(session, escalation_id, reviewer.principal)
    if found is None:
        return _not_found(request, reviewer, escalation_id)
    reading = live.read(session, found.job.id, reviewer.actor)
    log.info("ui.read_live", escalation=escalation_id, principal=reviewer.principal.name)
    found = items.load(session, escalation_id, reviewer.principal)
    assert found is not None
    return _item(request, session, found, reviewer, reading=reading)


def _not_found(request: Request, reviewer: sessions.Reviewer, escalation_id: int) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"title": "Not found", "message": f"There is no escalation {escalation_id} for you."},
        404,
        reviewer,
    )


@router.post("/escalations/{escalation_id}/claim")
async def claim(
    request: Request, escalation_id: int, session: SessionDep, reviewer: ReviewerDep
) -> Response:
    """Take the item for a while, so no one else decides it meanwhile."""
    await _checked_form(request, reviewer)
    return await run_in_threadpool(_claim, request, escalation_id, session, reviewer)


def _claim(
    request: Request, escalation_id: int, session: Session, reviewer: sessions.Reviewer
) -> Response:
    found = items.load(session, escalation_id, reviewer.principal)
    if found is None:
        return _not_found(request, reviewer, escalation_id)
    try:
        decisions.claim(session, found.esc, reviewer.actor)
        session.commit()
    except ConflictError as exc:
        session.rollback()
        return _item_error(request, session, escalation_id, reviewer, str(exc), 409)
    return RedirectResponse(f"/ui/escalations/{escalation_id}", status_code=303)


@router.post("/escalations/{escalation_id}/decision")
async def decide(
    request: Request,
    escalation_id: int,
    session: SessionDep,
    reviewer: ReviewerDep,
    background: BackgroundTasks,
) -> Response:
    """Approve, revise or reject, through the same service as the /v1 API."""
    form = await _checked_form(request, reviewer)
    response, job_id = await run_in_threadpool(
        _decide, request, escalation_id, session, reviewer, form
    )
    if job_id is not None:
        background.add_task(outbox.publish_for_job, job_id)
    return response


def _decide(
    request: Request,
    escalation_id: int,
    session: Session,
    reviewer: sessions.Reviewer,
    form: FormData,
) -> tuple[Response, str | None]:
    found = items.load(session, escalation_id, reviewer.principal)
    if found is None:
        return _not_found(request, reviewer, escalation_id), None
    try:
        body = _decision(found, form)
        decisions.decide(session, found.esc, body, reviewer.actor)
        session.commit()
    except (InputError, Forbidden, ConflictError) as exc:
        session.rollback()
        status = (
            403 if isinstance(exc, Forbidden) else 409 if isinstance(exc, ConflictError) else 400
        )
        return _item_error(request, session, escalation_id, reviewer, str(exc), status), None
    log.info(
        "ui.decision",
        escalation=escalation_id,
        decision=body.decision,
        principal=reviewer.principal.name,
    )
    target = f"/ui/escalations/{escalation_id}?decided={body.decision}"
    return RedirectResponse(target, status_code=303), found.job.id


def _decision(found: items.Item, form: FormData) -> decisions.Decision:
    """The form as the API's decision body; an irreversible approval needs its second
    confirmation, checked here on the server, not only by the page."""
    kind = _field(form, "decision") or ""
    irreversible = found.proposed is not None and found.proposed.irreversible
    if kind == "approve" and irreversible and _field(form, "confirm") != "yes":
        assert found.proposed is not None
        raise InputError(
            f"{found.proposed.tool} cannot be undone: tick the confirmation to approve it"
        )
    args = _edited_args(found, form) if kind in ("revise", "edit") else None
    try:
        return decisions.Decision.model_validate(
            {
                "decision": kind,
                "args": args,
                "reason_code": _field(form, "reason_code") or None,
                "note": _field(form, "note") or "",
            }
        )
    except ValidationError as exc:
        raise InputError(one_line(exc, "decision")) from exc


def _edited_args(found: items.Item, form: FormData) -> dict[str, Any]:
    """The step's arguments with the form's corrections, each parsed as its original kind."""
    if found.proposed is None:
        raise InputError("this escalation names no step to edit")
    args: dict[str, Any] = {}
    for arg in found.proposed.arguments:
        raw = _field(form, f"arg.{arg.name}")
        if raw is None:
            args[arg.name] = arg.value
            continue
        try:
            if arg.kind == "number":
                args[arg.name] = float(raw) if isinstance(arg.value, float) else int(raw.strip())
            elif arg.kind == "bool":
                args[arg.name] = raw.strip().lower() in ("true", "yes", "on", "1")
            elif arg.kind == "json":
                args[arg.name] = json.loads(raw)
            else:
                args[arg.name] = raw
        except ValueError as exc:
            raise InputError(f"{arg.name}: {raw!r} is not a valid {arg.kind}") from exc
    return args


def _item_error(
    request: Request,
    session: Session,
    escalation_id: int,
    reviewer: sessions.Reviewer,
    message: str,
    status: int,
) -> HTMLResponse:
    found = items.load(session, escalation_id, reviewer.principal)
    if found is None:
        return _not_found(request, reviewer, escalation_id)
    return _item(request, session, found, reviewer, error=message, status=status)


class SecurityHeaders:
    """Adds the console's security headers to its own pages' responses.

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's
    BaseHTTPMiddleware runs every request of the API (webhooks included) through a task
    group and memory streams, a visible share of an intake request's CPU, for headers
    only /ui pages get.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != "/ui" and not path.startswith("/ui/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI) -> None:
    """Mount the console on the API app: routes, static files, headers, error pages."""
    app.include_router(router)
    app.include_router(operators.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(SignInRequired)
    async def _sign_in(_r: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(
            "/ui/sign-in?" + urlencode({"next": _safe_next(exc.target)}), status_code=303
        )

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> Response:
        return render(
            request,
            "error.html",
            {
                "title": "Form refused",
                "message": "The form's security token is missing or stale. Nothing was "
                "changed; go back, reload the page and try again.",
            },
            403,
        )
