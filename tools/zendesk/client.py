"""Zendesk adapter: the Tickets API (JSON over HTTPS, basic auth with an API token)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import urllib3

from app.core.clients import per_process
from app.settings import get_settings
from tools.base import Response, call_http
from tools.http import Answer, HttpClient

SERVICE_IDENTITY = "zendesk:agent@opsgate/api-token"


def _not_found(response: Response) -> bool:
    """Zendesk answers a missing ticket or user with 404 (`RecordNotFound`)."""
    return response.status_code == 404


def _call(send: Callable[[], Answer]) -> Answer:
    return call_http("zendesk", send, _not_found)


def _client() -> HttpClient:
    settings = get_settings()
    # Basic auth with an API token: `{email}/token:{token}`.
    user = f"{settings.zendesk_email}/token:{settings.zendesk_api_token.get_secret_value()}"
    return HttpClient(
        settings.zendesk_api_base.rstrip("/"),
        headers={**urllib3.make_headers(basic_auth=user), "Accept": "application/json"},
        timeout=settings.http_timeout_seconds,
    )


def client() -> HttpClient:
    """This process's Zendesk HTTP client."""
    return per_process("zendesk", _client)


def get_ticket(ticket_id: int) -> dict[str, Any]:
    """GET /api/v2/tickets/{id}.json."""
    resp = _call(lambda: client().get(f"/api/v2/tickets/{ticket_id}.json"))
    ticket: dict[str, Any] = resp.json()["ticket"]
    return ticket


def get_user(user_id: int) -> dict[str, Any]:
    """GET /api/v2/users/{id}.json."""
    resp = _call(lambda: client().get(f"/api/v2/users/{user_id}.json"))
    user: dict[str, Any] = resp.json()["user"]
    return user


def list_comments(ticket_id: int) -> list[dict[str, Any]]:
    """GET /api/v2/tickets/{id}/comments.json, following next_page links."""
    comments: list[dict[str, Any]] = []
    url: str | None = f"/api/v2/tickets/{ticket_id}/comments.json"
    while url:
        page = _call(lambda u=url: client().get(u)).json()  # type: ignore[misc]
        comments.extend(page.get("comments", []))
        url = page.get("next_page")
    return comments


def update_ticket(ticket_id: int, ticket: dict[str, Any]) -> dict[str, Any]:
    """PUT /api/v2/tickets/{id}.json with a partial ticket (comment, status, tags, ...)."""
    resp = _call(
        lambda: client().put(f"/api/v2/tickets/{ticket_id}.json", json={"ticket": ticket}),
    )
    answer: dict[str, Any] = resp.json()
    return answer
