"""Personal data over HTTP: POST /v1/privacy/erasures and /v1/privacy/purges (admins)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import PrincipalDep, SessionDep
from app.privacy import erasure as privacy
from app.settings import get_settings

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])


class Erasure(BaseModel):
    """A data-subject request: the e-mail address, login or requester id to erase."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=3, max_length=320)


class Purge(BaseModel):
    """Scrub what is past retention (default OPSGATE_RETENTION_DAYS)."""

    model_config = ConfigDict(extra="forbid")

    older_than_days: int | None = Field(None, ge=1)


def as_data(result: privacy.Scrubbed) -> dict[str, Any]:
    """What an erasure or a purge changed, as the API and the CLI report it."""
    return {
        "jobs": result.jobs,
        "deliveries": result.deliveries,
        "tool_calls": result.tool_calls,
        "model_calls": result.model_calls,
        "escalations": result.escalations,
        "job_ids": result.job_ids,
        "skipped_unfinished": result.skipped_active,
    }


@router.post("/erasures")
def erase(body: Erasure, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Erase a data subject from every store of personal data; the caller's key is the actor."""
    principal.require("admin")
    try:
        result = privacy.erase_subject(session, body.subject, actor=principal.actor)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    session.commit()
    return as_data(result)


@router.post("/purges")
def purge(body: Purge, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Scrub the personal data of jobs settled before the retention window."""
    principal.require("admin")
    days = body.older_than_days or get_settings().retention_days
    result = privacy.purge_expired(session, older_than=timedelta(days=days), actor=principal.actor)
    session.commit()
    return as_data(result)
