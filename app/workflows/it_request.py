"""it_request: a service desk asks for a password reset, a group, or an offboarding.

The rules tier resets a user's own password, adds to ordinary groups, and proposes
suspensions and privileged grants for a person to approve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import EmailStr, Field, model_validator

from app.controls.calls import CallRecorder
from app.jobs.context import PlanningContext
from app.rules.access import plan_it_request
from app.workflows.base import Workflow, WorkflowInput, unless_missing
from tools.okta import client as okta_api


class ItRequestInput(WorkflowInput):
    """it_request: an access, reset or offboarding request from a service desk."""

    request_type: Literal["password_reset", "group_access", "offboarding"]
    target_login: EmailStr
    group_id: str | None = Field(None, min_length=1, max_length=64)
    justification: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _group_for_access(self) -> ItRequestInput:
        if self.request_type == "group_access" and not self.group_id:
            raise ValueError("group_access needs group_id")
        return self


def _okta_user(rec: CallRecorder, login: str) -> dict[str, Any] | None:
    """The Okta user with this login, or None (no such user, or not a login at all)."""
    if not 3 <= len(login) <= 255:  # okta.get_user's argument bounds
        return None
    return unless_missing(lambda: rec.tool("okta.get_user", {"login": login})["user"])


def read_context(
    job_input: dict[str, Any],
    requester: str,
    rec: CallRecorder,
    seen: Mapping[str, Any] | None,
) -> PlanningContext:
    """The target user and their groups, and the requester's Okta user (by login)."""
    login = job_input["target_login"]
    target = _okta_user(rec, login)
    groups: list[dict[str, Any]] = []
    if target is not None:
        user_id = target["id"]
        groups = rec.read(
            "okta.list_user_groups",
            {"user_id": user_id},
            lambda: okta_api.user_groups(user_id),
        )
    own = requester.lower() == login.lower()
    requester_user = target if own else _okta_user(rec, requester)
    return {
        "input": job_input,
        "requester": requester,
        "target": target,
        "requester_user": requester_user,
        "target_groups": groups,
    }


WORKFLOW = Workflow(
    name="it_request",
    input_model=ItRequestInput,
    read_context=read_context,
    plan=plan_it_request,
    policy_doc="access",
    signals=frozenset({"target_is_the_jobs", "action_matches_request"}),
    writes=("okta.reset_password", "okta.add_to_group", "okta.suspend_user"),
)
