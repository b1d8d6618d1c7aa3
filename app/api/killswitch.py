"""The kill switch over HTTP: GET and POST /v1/killswitch (admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import PrincipalDep, SessionDep
from app.controls import killswitch
from app.jobs import outbox

router = APIRouter(prefix="/v1", tags=["killswitch"])


class SwitchChange(BaseModel):
    """Engage or release one switch."""

    model_config = ConfigDict(extra="forbid")

    engaged: bool
    workflow: str | None = Field(None, max_length=64)
    tool: str | None = Field(None, max_length=64)
    reason: str = Field(..., min_length=1, max_length=2000)


@router.get("/killswitch")
def show(principal: PrincipalDep) -> dict[str, Any]:
    """Every engaged switch (config and runtime), with who engaged it and why."""
    principal.require("reviewer", "admin")
    return {"engaged": killswitch.status()}


@router.post("/killswitch")
def change(body: SwitchChange, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Turn a switch on or off for the whole fleet; the caller's key is the actor."""
    principal.require("admin")
    return apply_change(session, body, principal.actor)


def apply_change(session: Any, body: SwitchChange, actor: str) -> dict[str, Any]:
    """Engage or release, commit, and (on release) resume what the switch parked."""
    scope = killswitch.scope_of(body.workflow, body.tool)
    if body.engaged:
        killswitch.engage(session, scope, actor, body.reason)
        session.commit()
        return {"scope": scope, "engaged": True, "resumed": 0}
    killswitch.release(session, scope, actor, body.reason)
    resumed = killswitch.resume_released(session, actor)
    session.commit()
    for job_id in resumed:
        outbox.publish_for_job(job_id)
    return {"scope": scope, "engaged": False, "resumed": len(resumed)}
