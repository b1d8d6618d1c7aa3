"""What every console page uses: the templates, `render`, the request's database session and
signed-in reviewer as dependencies, and forms checked for the session's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import jinja2
import structlog
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.core import db
from app.human import decisions
from app.reasons import REASONS
from app.settings import get_settings
from app.ui import item as items
from app.ui import sessions

log = structlog.get_logger(__name__)
HERE = Path(__file__).parent

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
templates = Jinja2Templates(env=_env)


class SignInRequired(Exception):
    """Raised when a console page is asked for without a live session."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def get_session() -> Iterator[Session]:
    """One database session per request."""
    with db.session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_reviewer(request: Request, session: SessionDep) -> sessions.Reviewer:
    """The signed-in reviewer, or a redirect to the sign-in page."""
    reviewer = sessions.current(session, request.cookies.get(sessions.COOKIE))
    if reviewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else "/ui/escalations")
    return reviewer


ReviewerDep = Annotated[sessions.Reviewer, Depends(current_reviewer)]


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    reviewer: sessions.Reviewer | None = None,
) -> HTMLResponse:
    """A page, with the reviewer (if any) and the names every page uses."""
    base = {
        "reviewer": reviewer,
        "reasons": REASONS,
        "reject_reasons": decisions.REJECT_REASONS,
        "now": items.now(),
        "fmt": _fmt,
        "flower_url": get_settings().flower_url,
    }
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def _fmt(delta: Any) -> str:
    """A timedelta as '3d 4h', '2h 5m' or '40s' (negative: 'overdue 2h 5m')."""
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    sign, seconds = ("overdue " if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m" if minutes else f"{sign}{secs}s"


class CsrfRefused(Exception):
    """Raised when a console form arrives without this session's CSRF token."""


def field(form: FormData, name: str) -> str | None:
    """A text field of a form (None when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else None


async def checked_form(request: Request, reviewer: sessions.Reviewer) -> FormData:
    """The request's form, refused (CsrfRefused) without this session's CSRF token."""
    form = await request.form()
    if not sessions.csrf_ok(reviewer, field(form, "csrf_token")):
        log.warning("ui.csrf_refused", principal=reviewer.principal.name, path=request.url.path)
        raise CsrfRefused()
    return form
