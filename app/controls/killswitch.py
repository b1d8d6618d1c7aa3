"""The kill switch: global, per workflow and per tool, in config/ and as a Redis override.

Checked immediately before every tool call (app/controls/calls.py) with one Redis round trip, so the
whole fleet obeys as soon as the override is written: there is no cache to expire. Either
source saying "on" means on. If Redis cannot be read, writes fail closed (the job parks)
and reads go ahead, as with the breaker. A job that meets an engaged switch parks as
`paused` with the switch's scope in its reason; the reaper sends it back to its stage once
that scope is released (`resume_released`), so a long stop costs no churn.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import chain as audit
from app.controls.policy import current_policy
from app.core import broker, configfile
from app.core.db import session_scope
from app.errors import InputError, KillSwitchEngaged, StaleJob
from app.jobs import lifecycle
from app.models import Job, KillSwitchEvent, utcnow
from tools.catalog import CATALOG

KEY = "opsgate:killswitch"
# Present once the hash was built from the database: a Redis that lost its data (a restart
# without persistence) must not silently release an engaged switch.
LOADED = "_loaded"
REASON_PREFIX = "kill_switch: "


class SwitchFile(BaseModel):
    """config/killswitch.yaml."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    global_: bool = Field(False, alias="global")
    workflows: dict[str, bool] = Field(default_factory=dict)
    tools: dict[str, bool] = Field(default_factory=dict)

    def engaged(self) -> set[str]:
        """The scopes this file turns on."""
        on = {"global"} if self.global_ else set()
        on |= {f"workflow:{w}" for w, v in self.workflows.items() if v}
        return on | {f"tool:{t}" for t, v in self.tools.items() if v}


def scope_of(workflow: str | None = None, tool: str | None = None) -> str:
    """The scope name for a switch: `global`, `workflow:<name>` or `tool:<name>`."""
    if workflow and tool:
        raise InputError("a switch covers a workflow or a tool, not both")

    if workflow and workflow not in current_policy().workflows:
        known = ", ".join(sorted(current_policy().workflows))
        raise InputError(f"unknown workflow {workflow!r}; known: {known}")
    if tool and tool not in CATALOG:
        raise InputError(f"unknown tool {tool!r}; known: {', '.join(sorted(CATALOG))}")
    if workflow:
        return f"workflow:{workflow}"
    return f"tool:{tool}" if tool else "global"


def _scopes(workflow: str, tool: str) -> list[str]:
    return ["global", f"workflow:{workflow}", f"tool:{tool}"]


def from_config() -> set[str]:
    """The scopes config/killswitch.yaml engages."""
    return configfile.current("killswitch.yaml", SwitchFile).engaged()


def engaged_scope(workflow: str, tool: str) -> tuple[str, dict[str, Any]] | None:
    """The first engaged scope covering this call and who engaged it, or None.

    Raises redis errors to the caller (check decides what a failed read means).
    """
    configured = from_config()
    scopes = _scopes(workflow, tool)
    for scope in scopes:
        if scope in configured:
            return scope, {"by": "config/killswitch.yaml"}
    client = broker.client()
    values = client.hmget(KEY, [*scopes, LOADED])
    if values[-1] is None:
        rebuild()
        values = client.hmget(KEY, [*scopes, LOADED])
    for scope, raw in zip(scopes, values[:-1], strict=True):
        if raw is not None:
            return scope, json.loads(raw)
    return None


def check(workflow: str, tool: str, *, write: bool) -> None:
    """Raise KillSwitchEngaged if a switch covers this call (the caller parks the job)."""
    try:
        found = engaged_scope(workflow, tool)
    except (redis.RedisError, OSError) as exc:
        if write:
            raise KillSwitchEngaged(
                "unknown", f"kill switch unreadable ({exc}); writes fail closed"
            ) from exc
        return
    if found is not None:
        scope, who = found
        raise KillSwitchEngaged(scope, f"engaged by {who.get('by', 'unknown')}")


def _value(actor: str, at: str, reason: str) -> str:
    return json.dumps({"by": actor, "at": at, "reason": reason})


def rebuild(session: Session | None = None) -> None:
    """Load the runtime switches from the event history (after Redis lost them); in the
    caller's session when given, so its own uncommitted flips count."""
    if session is None:
        with session_scope() as own:
            return rebuild(own)
    state: dict[str, KillSwitchEvent] = {}
    for event in session.scalars(select(KillSwitchEvent).order_by(KillSwitchEvent.id)):
        state[event.scope] = event
    engaged: dict[str | bytes, str | bytes] = {
        scope: _value(e.actor, (e.at or utcnow()).isoformat(), e.reason)
        for scope, e in state.items()
        if e.engaged
    }
    # Only adds: a release racing this load may be undone, never an engage (fails safe).
    engaged[LOADED] = "1"
    broker.client().hset(KEY, mapping=engaged)  # type: ignore[arg-type]


def _ensure_loaded(session: Session | None = None) -> None:
    if not broker.client().hexists(KEY, LOADED):
        rebuild(session)


def _audit(session: Session, scope: str, engaged: bool, actor: str, reason: str) -> None:
    """Flips belong to no job: they go on the fleet's own chain (audit.FLEET)."""
    audit.append(
        session,
        audit.FLEET,
        "kill_switch",
        actor,
        {"scope": scope, "engaged": engaged, "reason": reason},
    )


def engage(session: Session, scope: str, actor: str, reason: str) -> None:
    """Turn a switch on fleet-wide: recorded first, then live (the caller commits)."""
    event = KillSwitchEvent(scope=scope, engaged=True, actor=actor, reason=reason, at=utcnow())
    session.add(event)
    _audit(session, scope, True, actor, reason)
    session.flush()
    broker.client().hset(KEY, scope, _value(actor, event.at.isoformat(), reason))


def release(session: Session, scope: str, actor: str, reason: str) -> None:
    """Turn a runtime switch off (a switch in config/ stays on until the file says so)."""
    session.add(KillSwitchEvent(scope=scope, engaged=False, actor=actor, reason=reason))
    _audit(session, scope, False, actor, reason)
    session.flush()
    broker.client().hdel(KEY, scope)


class SwitchChange(BaseModel):
    """Engage or release one switch (the body of POST /v1/killswitch, the console's form)."""

    model_config = ConfigDict(extra="forbid")

    engaged: bool
    workflow: str | None = Field(None, max_length=64)
    tool: str | None = Field(None, max_length=64)
    reason: str = Field(..., min_length=1, max_length=2000)


def change(session: Session, body: SwitchChange, actor: str) -> tuple[str, list[str]]:
    """Engage or release one switch and, on release, send back what it parked: its scope and
    the resumed jobs' ids (the caller commits, then publishes them)."""
    scope = scope_of(body.workflow, body.tool)
    if body.engaged:
        engage(session, scope, actor, body.reason)
        return scope, []
    release(session, scope, actor, body.reason)
    return scope, resume_released(session, actor)


def status() -> list[dict[str, Any]]:
    """Every engaged switch: scope, source, who, when, why."""
    rows = [{"scope": s, "source": "config"} for s in sorted(from_config())]
    _ensure_loaded()
    raw: dict[bytes, bytes] = broker.client().hgetall(KEY)  # type: ignore[assignment]
    for scope, value in sorted(raw.items()):
        if scope.decode() == LOADED:
            continue
        rows.append({"scope": scope.decode(), "source": "runtime", **json.loads(value)})
    return rows


def resume_released(session: Session, actor: str) -> list[str]:
    """Send jobs parked by a switch back to their stage once no switch covers them; returns
    their ids (the caller commits, then publishes)."""
    parked = session.scalars(
        select(Job).where(
            Job.status == lifecycle.PAUSED, Job.status_reason.like(f"{REASON_PREFIX}%")
        )
    ).all()
    _ensure_loaded(session)
    runtime = {k.decode() for k in broker.client().hkeys(KEY)}  # type: ignore[union-attr]
    on = from_config() | (runtime - {LOADED})
    resumed: list[str] = []
    for job in parked:
        scope = (job.status_reason or "")[len(REASON_PREFIX) :].split(" ", 1)[0]
        if scope in on or "global" in on or f"workflow:{job.workflow}" in on:
            continue
        if job.resume_status not in lifecycle.ACTIVE:
            continue
        try:
            with session.begin_nested():
                lifecycle.transition(
                    session,
                    job,
                    job.resume_status,
                    actor=actor,
                    reason=f"kill switch {scope} released",
                )
        except StaleJob:
            continue
        resumed.append(job.id)
    return resumed
