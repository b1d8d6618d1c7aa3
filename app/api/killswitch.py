"""The kill switch over HTTP: GET and POST /v1/killswitch (admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import PrincipalDep, SessionDep
from app.controls import killswitch
from app.controls.killswitch import SwitchChange
from app.jobs import outbox

router = APIRouter(prefix="/v1", tags=["killswitch"])


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
    scope, resumed = killswitch.change(session, body, actor)
    session.commit()
    for job_id in resumed:
        outbox.publish_for_job(job_id)
    return {"scope": scope, "engaged": body.engaged, "resumed": len(resumed)}
