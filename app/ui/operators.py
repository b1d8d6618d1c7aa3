"""The operators' pages of the console: the jobs, one job's audit story, the kill switch,
the KPI report.

Reading is for every signed-in reviewer within their scope; changing (a switch, a job) is for
admins, through the same functions as the /v1 API and the CLI, with the session's identity as
the actor and the session's CSRF token on every form.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import redis
import structlog
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from app.audit.story import story
from app.controls import killswitch
from app.controls.policy import current_policy
from app.core.timespec import parse_since
from app.errors import Forbidden, InputError, one_line
from app.identity.visibility import may_see
from app.jobs import lifecycle, operations, outbox
from app.models import Job
from app.reporting import html as report_html
from app.reporting import kpis
from app.ui import item as items
from app.ui import jobs, sessions
from app.ui.pages import ReviewerDep, SessionDep, checked_form, field, render
from tools.catalog import CATALOG

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/ui", include_in_schema=False)


def _is_admin(reviewer: sessions.Reviewer) -> bool:
    return reviewer.principal.role == "admin"


def _error(
    request: Request, reviewer: sessions.Reviewer, title: str, message: str, status: int
) -> HTMLResponse:
    return render(request, "error.html", {"title": title, "message": message}, status, reviewer)


# ---- the jobs -------------------------------------------------------------------------------


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    session: SessionDep,
    reviewer: ReviewerDep,
    q: str = "",
    status: str = "",
    workflow: str = "",
    page: int = 1,
) -> HTMLResponse:
    """Every job the reviewer may see, newest first, searched, filtered and paginated."""
    wanted = jobs.JobFilter(
        q=q[:200],
        status=status if status in jobs.STATUSES else "",
        workflow=workflow[:64],
        page=max(1, page),
    )
    found = jobs.page(session, reviewer.principal, wanted)
    return render(
        request,
        "jobs.html",
        {"page": found, "wanted": wanted, "link": lambda **c: "?" + urlencode(wanted.query(**c))},
        reviewer=reviewer,
    )


def _visible(session: Session, reviewer: sessions.Reviewer, job_id: str) -> Job | None:
    job = session.get(Job, job_id[:36])
    return job if job is not None and may_see(reviewer.principal, job) else None


def _actions(job: Job) -> list[str]:
    """The operator actions the job's status allows (the service checks again)."""
    offered = [] if job.status in lifecycle.TERMINAL else ["cancel"]
    if job.status in (lifecycle.FAILED, lifecycle.ESCALATED):
        offered.append("retry")
    if job.status == lifecycle.PAUSED:
        offered.append("resume")
    return offered


def _job_page(
    request: Request,
    session: Session,
    reviewer: sessions.Reviewer,
    job_id: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    job = _visible(session, reviewer, job_id)
    if job is None:
        return _error(request, reviewer, "Not found", f"There is no job {job_id} for you.", 404)
    return render(
        request,
        "job.html",
        {
            "job": job,
            "story": story(session, job),
            "words": items.words(job.input),
            "actions": _actions(job) if _is_admin(reviewer) else [],
            "error": error,
            "done": request.query_params.get("done", ""),
        },
        status,
        reviewer,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, job_id: str, session: SessionDep, reviewer: ReviewerDep
) -> HTMLResponse:
    """One job's audit story: who asked, what was read and proposed, what allowed it, what
    changed, what it cost, and whether the record verifies."""
    return _job_page(request, session, reviewer, job_id)


@router.post("/jobs/{job_id}/{action}")
async def operate(
    request: Request,
    job_id: str,
    action: str,
    session: SessionDep,
    reviewer: ReviewerDep,
    background: BackgroundTasks,
) -> Response:
    """cancel | retry | resume a job (admins), as `POST /v1/jobs/{id}/{action}` does."""
    form = await checked_form(request, reviewer)
    response, changed = await run_in_threadpool(
        _operate, request, job_id, action, session, reviewer, field(form, "reason") or ""
    )
    if changed:
        background.add_task(outbox.publish_for_job, job_id)
    return response


def _operate(
    request: Request,
    job_id: str,
    action: str,
    session: Session,
    reviewer: sessions.Reviewer,
    reason: str,
) -> tuple[Response, bool]:
    job = _visible(session, reviewer, job_id)
    if job is None or action not in operations.ACTIONS:
        what = f"job {job_id}" if job is None else f"action {action!r}"
        return _error(request, reviewer, "Not found", f"There is no {what} for you.", 404), False
    try:
        reviewer.principal.require("admin")
        if not reason.strip():
            raise InputError(f"give a reason to {action} the job")
        operations.perform(session, job, action, actor=reviewer.actor, reason=reason[:2000])
        session.commit()
    except Forbidden as exc:
        session.rollback()
        log.warning("ui.operator_refused", principal=reviewer.principal.name, action=action)
        return _error(request, reviewer, "Not allowed", str(exc), 403), False
    except InputError as exc:
        session.rollback()
        return _job_page(request, session, reviewer, job_id, str(exc), 400), False
    log.info("ui.operator_action", job=job_id, action=action, principal=reviewer.principal.name)
    return RedirectResponse(f"/ui/jobs/{job_id}?done={action}", status_code=303), True


# ---- the kill switch ------------------------------------------------------------------------


def _switch_page(
    request: Request,
    reviewer: sessions.Reviewer,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    try:
        engaged, unreadable = killswitch.status(), None
    except (redis.RedisError, OSError) as exc:
        engaged, unreadable = [], str(exc)
    by_scope: dict[str, list[dict[str, Any]]] = {}
    for row in engaged:
        by_scope.setdefault(row["scope"], []).append(row)
    return render(
        request,
        "killswitch.html",
        {
            "by_scope": by_scope,
            "workflows": sorted(current_policy().workflows),
            "tools": sorted(CATALOG),
            "unreadable": unreadable,
            "admin": _is_admin(reviewer),
            "error": error,
            "done": request.query_params.get("done", ""),
        },
        status,
        reviewer,
    )


@router.get("/killswitch", response_class=HTMLResponse)
def switch_page(request: Request, reviewer: ReviewerDep) -> HTMLResponse:
    """Every switch, global, per workflow and per tool, from config/ and the runtime
    override, with who engaged it and why; the form for admins."""
    return _switch_page(request, reviewer)


@router.post("/killswitch")
async def switch(
    request: Request, session: SessionDep, reviewer: ReviewerDep, background: BackgroundTasks
) -> Response:
    """Engage or release one switch (admins), as `POST /v1/killswitch` does."""
    form = await checked_form(request, reviewer)
    response, resumed = await run_in_threadpool(_switch, request, session, reviewer, form)
    for job_id in resumed:
        background.add_task(outbox.publish_for_job, job_id)
    return response


def _change(form: FormData) -> killswitch.SwitchChange:
    """The form as the API's body: `scope` is `global`, `workflow:NAME` or `tool:NAME`."""
    kind, _, name = (field(form, "scope") or "").partition(":")
    if kind not in ("global", "workflow", "tool") or (kind != "global") != bool(name):
        raise InputError("choose the switch: global, a workflow or a tool")
    try:
        return killswitch.SwitchChange.model_validate(
            {
                "engaged": field(form, "action") == "engage",
                "workflow": name if kind == "workflow" else None,
                "tool": name if kind == "tool" else None,
                "reason": (field(form, "reason") or "").strip(),
            }
        )
    except ValidationError as exc:
        raise InputError(one_line(exc, "switch")) from exc


def _switch(
    request: Request, session: Session, reviewer: sessions.Reviewer, form: FormData
) -> tuple[Response, list[str]]:
    try:
        reviewer.principal.require("admin")
        if field(form, "action") not in ("engage", "release"):
            raise InputError("engage or release?")
        body = _change(form)
        scope, resumed = killswitch.change(session, body, reviewer.actor)
        session.commit()
    except Forbidden as exc:
        session.rollback()
        log.warning("ui.killswitch_refused", principal=reviewer.principal.name)
        return _error(request, reviewer, "Not allowed", str(exc), 403), []
    except InputError as exc:
        session.rollback()
        return _switch_page(request, reviewer, str(exc), 400), []
    except (redis.RedisError, OSError) as exc:
        session.rollback()
        return _switch_page(request, reviewer, f"the switch could not be set: {exc}", 503), []
    log.info(
        "ui.killswitch",
        scope=scope,
        engaged=body.engaged,
        principal=reviewer.principal.name,
    )
    done = "engaged" if body.engaged else "released"
    return RedirectResponse(
        "/ui/killswitch?" + urlencode({"done": f"{scope} {done}"}), status_code=303
    ), resumed


# ---- the KPI report -------------------------------------------------------------------------


@router.get("/report", response_class=HTMLResponse)
def report_page(
    request: Request, session: SessionDep, reviewer: ReviewerDep, since: str = ""
) -> HTMLResponse:
    """`opsgate report --html`'s report inside the console (its charts are inline SVG: no
    script). The report counts every workflow and has no workflow filter, so a key scoped to
    workflows is refused rather than shown the others' numbers."""
    if reviewer.principal.workflows is not None:
        return _error(
            request,
            reviewer,
            "Report not available",
            "The KPI report counts every workflow and cannot yet be limited to yours; "
            "ask an unscoped reviewer or an admin.",
            403,
        )
    try:
        start = parse_since(since[:40]) if since.strip() else None
    except InputError as exc:
        return _error(request, reviewer, "Bad window", str(exc), 400)
    data = kpis.build(session, start)
    return render(
        request,
        "report.html",
        {"report": report_html.body(data), "since": since[:40]},
        reviewer=reviewer,
    )


@router.get("/report.css")
def report_style() -> Response:
    """The report's own styles, served from the console (its CSP allows no inline style)."""
    return Response(report_html.STYLE, media_type="text/css")
