"""The jobs API: JSON intake from other systems, and the read side."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.api import webhooks
from app.api.body import JSON_TYPES, media_type, parse_json, read_body
from app.api.deps import PrincipalDep, SessionDep, visible_escalation, visible_job
from app.api.problems import HTTPProblem
from app.controls import policy
from app.errors import Forbidden, InputError, one_line
from app.human import decisions
from app.identity.visibility import visible_jobs
from app.intake import submissions
from app.jobs import operations, outbox
from app.jobs.views import escalation_view, job_detail, job_summary, latest_escalation
from app.models import Escalation, EscalationStatus, Job

router = APIRouter(prefix="/v1")


class JobRequest(BaseModel):
    """The body of POST /v1/jobs; `requester` is the human the calling system vouches for."""

    model_config = ConfigDict(extra="forbid")

    workflow: str
    external_id: str = Field(min_length=1, max_length=200)
    requester: str = Field(min_length=1, max_length=255)
    input: dict[str, Any]


@router.post("/jobs", status_code=202)
async def create_job(
    request: Request,
    principal: PrincipalDep,
    background: BackgroundTasks,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Accept a job: 202 when created, 200 with the original for a repeat, 409 on a conflict."""
    principal.require("requester", "admin")
    body = await read_body(request, JSON_TYPES)
    raw = parse_json(body)
    try:
        req = JobRequest.model_validate(raw)
    except ValidationError as exc:
        raise InputError(one_line(exc, "body")) from exc
    # Before the input is checked against the workflow: a scoped key learns nothing more.
    principal.require_workflow(req.workflow)
    sub = submissions.parse_submission(
        {**req.model_dump(), "source": "api", "delivery_id": f"{principal.name}:{req.external_id}"}
    )
    roles = policy.workflow_policy(sub.workflow)[0].requester_roles
    if principal.role not in roles:
        raise Forbidden(
            f"role {principal.role} may not start {sub.workflow} "
            f"(policy requester_roles: {', '.join(roles)})"
        )
    results = await run_in_threadpool(
        submissions.accept_delivery,
        [sub],
        submitted_by=principal.actor,
        source="api",
        content_type=media_type(request),
        headers=webhooks.audit_headers(request),
        body=body.decode("utf-8", "replace"),
        idempotency_key=idempotency_key,
        check_body=True,
    )
    job_id, created = results[0].job_id, results[0].created
    webhooks.publish_after(results, background)
    answer = {"job_id": job_id, "created": created, "status_url": f"/v1/jobs/{job_id}"}
    return JSONResponse(
        answer, status_code=202 if created else 200, headers={"Location": f"/v1/jobs/{job_id}"}
    )


@router.get("/jobs")
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    workflow: str | None = None,
    status: str | None = None,
    source: str | None = None,
    incident: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Newest jobs the caller may see (`incident=true`: writes a read-back did not confirm)."""
    query = select(Job).where(*visible_jobs(principal)).order_by(Job.created_at.desc()).limit(limit)
    if incident is not None:
        query = query.where(Job.incident.is_(incident))
    for column, value in ((Job.workflow, workflow), (Job.status, status), (Job.source, source)):
        if value:
            query = query.where(column == value)
    return [job_summary(j, latest_escalation(session, j.id)) for j in session.scalars(query)]


@router.get("/jobs/{job_id}")
def get_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Status, steps, events and escalation of one job (404 for one the caller may not see)."""
    return job_detail(session, visible_job(session, principal, job_id))


@router.get("/escalations")
def list_escalations(
    session: SessionDep, principal: PrincipalDep, status: str = EscalationStatus.OPEN
) -> list[dict[str, Any]]:
    """The human queue (reviewers and admins), limited to the workflows of the caller's scope."""
    principal.require("reviewer", "admin")
    query = (
        select(Escalation)
        .join(Job, Job.id == Escalation.job_id)
        .where(*visible_jobs(principal))
        .order_by(Escalation.id)
    )
    if status != "all":
        query = query.where(Escalation.status == status)
    return [escalation_view(e) for e in session.scalars(query)]


@router.post("/escalations/{escalation_id}/decision")
def decide_escalation(
    escalation_id: int, body: decisions.Decision, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """approve | edit | revise | reject one escalation; the reviewer is the authenticated key."""
    principal.require("reviewer", "admin")
    esc = visible_escalation(session, principal, escalation_id)
    result = decisions.decide(session, esc, body, principal.actor)
    session.commit()
    background_publish(esc.job_id)
    return result


@router.post("/escalations/{escalation_id}/claim")
def claim_escalation(
    escalation_id: int, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Take an escalation to work on it; others cannot decide it while the claim holds."""
    principal.require("reviewer", "admin")
    esc = visible_escalation(session, principal, escalation_id)
    result = decisions.claim(session, esc, principal.actor)
    session.commit()
    return result


class OperatorAction(BaseModel):
    """The body of an operator action; the operator is the authenticated key."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000)


@router.post("/jobs/{job_id}/{action}")
def operate(
    job_id: str,
    action: str,
    session: SessionDep,
    principal: PrincipalDep,
    body: OperatorAction | None = None,
) -> dict[str, Any]:
    """cancel | retry | resume a job (admins), recorded with the caller's identity."""
    principal.require("admin")
    job = visible_job(session, principal, job_id)
    if action not in operations.ACTIONS:
        raise HTTPProblem(404, f"unknown action {action!r}; use cancel, retry or resume")
    result = operations.perform(
        session,
        job,
        action,
        actor=principal.actor,
        reason=(body.reason if body else "") or "no reason given",
    )
    session.commit()
    background_publish(job_id)
    return {"job_id": job_id, "status": result}


def background_publish(job_id: str) -> None:
    """Publish the job's next stage message (after the commit)."""
    outbox.publish_for_job(job_id)
