"""Request dependencies: a session per request, the authenticated caller, and the jobs and
escalations the caller may see."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.orm import Session

from app.api.problems import HTTPProblem
from app.core import db
from app.identity import apikeys
from app.identity.visibility import may_see
from app.models import Escalation, Job


def get_session() -> Iterator[Session]:
    """One session per request, closed afterwards."""
    with db.session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> apikeys.Principal:
    """The caller named by the bearer key (401 without a valid one)."""
    return apikeys.authenticate(session, authorization)


PrincipalDep = Annotated[apikeys.Principal, Depends(get_principal)]


def visible_job(session: Session, principal: apikeys.Principal, job_id: str) -> Job:
    """The job, or 404 if there is none or the caller may not see it."""
    job = session.get(Job, job_id)
    # The same answer for "not yours" as for "none": a job outside the caller's scope or
    # submissions is not revealed to exist.
    if job is None or not may_see(principal, job):
        raise HTTPProblem(404, f"no job {job_id}")
    return job


def visible_escalation(
    session: Session, principal: apikeys.Principal, escalation_id: int
) -> Escalation:
    """The escalation, or 404 if there is none or its job is one the caller may not see."""
    esc = session.get(Escalation, escalation_id)
    job = session.get(Job, esc.job_id) if esc is not None else None
    if esc is None or job is None or not may_see(principal, job):
        raise HTTPProblem(404, f"no escalation {escalation_id}")
    return esc
