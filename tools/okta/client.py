"""Okta adapter: the Users and Groups API with an SSWS API token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from app.core.clients import per_process
from app.settings import get_settings
from tools.base import Response, call_http, error_code
from tools.http import Answer, HttpClient

SERVICE_IDENTITY = "okta:api-token/opsgate-helpdesk"


def _not_found(response: Response) -> bool:
    """Okta's "Not found: Resource not found" (E0000007, HTTP 404)."""
    return response.status_code == 404 and error_code(response) == "E0000007"


def _call(send: Callable[[], Answer]) -> Answer:
    return call_http("okta", send, _not_found)


def _client() -> HttpClient:
    settings = get_settings()
    return HttpClient(
        f"{settings.okta_api_base.rstrip('/')}/api/v1",
        headers={
            "Authorization": f"SSWS {settings.okta_api_token.get_secret_value()}",
            "Accept": "application/json",
        },
        timeout=settings.http_timeout_seconds,
    )


def client() -> HttpClient:
    """This process's Okta client."""
    return per_process("okta", _client)


def get_user(id_or_login: str) -> dict[str, Any]:
    """GET /users/{id or login}."""
    resp = _call(lambda: client().get(f"/users/{quote(id_or_login, safe='@')}"))
    return dict(resp.json())


def get_group(group_id: str) -> dict[str, Any]:
    """GET /groups/{id}."""
    return dict(_call(lambda: client().get(f"/groups/{quote(group_id)}")).json())


def user_groups(user_id: str) -> list[dict[str, Any]]:
    """GET /users/{id}/groups."""
    return list(_call(lambda: client().get(f"/users/{quote(user_id)}/groups")).json())


def reset_password(user_id: str) -> dict[str, Any]:
    """POST /users/{id}/lifecycle/reset_password?sendEmail=true (the user gets the email)."""
    resp = _call(
        lambda: client().post(
            f"/users/{quote(user_id)}/lifecycle/reset_password", params={"sendEmail": "true"}
        ),
    )
    return dict(resp.json()) if resp.content else {}


def add_to_group(user_id: str, group_id: str) -> None:
    """PUT /groups/{gid}/users/{uid} (204 No Content)."""
    _call(lambda: client().put(f"/groups/{quote(group_id)}/users/{quote(user_id)}"))


def suspend_user(user_id: str) -> dict[str, Any]:
    """POST /users/{id}/lifecycle/suspend."""
    resp = _call(lambda: client().post(f"/users/{quote(user_id)}/lifecycle/suspend"))
    return dict(resp.json()) if resp.content else {}
