"""Salesforce adapter: REST sObjects (`/services/data/vNN.N/...`) with an OAuth access token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.core.clients import per_process
from app.settings import get_settings
from tools.base import Response, call_http, error_code
from tools.http import Answer, HttpClient

SERVICE_IDENTITY = "salesforce:integration-user/opsgate-finance"


def _not_found(response: Response) -> bool:
    """Salesforce's NOT_FOUND (HTTP 404: "The requested resource does not exist")."""
    return response.status_code == 404 and error_code(response) == "NOT_FOUND"


def _call(send: Callable[[], Answer]) -> Answer:
    return call_http("salesforce", send, _not_found)


def _client() -> HttpClient:
    settings = get_settings()
    return HttpClient(
        f"{settings.salesforce_api_base.rstrip('/')}/services/data/"
        f"{settings.salesforce_api_version}",
        headers={
            "Authorization": f"Bearer {settings.salesforce_access_token.get_secret_value()}",
            "Accept": "application/json",
        },
        timeout=settings.http_timeout_seconds,
    )


def client() -> HttpClient:
    """This process's Salesforce client."""
    return per_process("salesforce", _client)


def get_record(sobject: str, record_id: str) -> dict[str, Any]:
    """GET /sobjects/{type}/{id}."""
    resp = _call(lambda: client().get(f"/sobjects/{sobject}/{record_id}"))
    return dict(resp.json())


def update_record(sobject: str, record_id: str, fields: dict[str, Any]) -> None:
    """PATCH /sobjects/{type}/{id} (204 No Content on success)."""
    _call(lambda: client().patch(f"/sobjects/{sobject}/{record_id}", json=fields))


def query(soql: str) -> list[dict[str, Any]]:
    """GET /query?q=SOQL, following nextRecordsUrl."""
    records: list[dict[str, Any]] = []
    resp = _call(lambda: client().get("/query", params={"q": soql}))
    page = resp.json()
    records.extend(page.get("records", []))
    while not page.get("done", True) and page.get("nextRecordsUrl"):
        base = str(client().base_url).split("/services/data/")[0]
        url = base + page["nextRecordsUrl"]
        page = _call(lambda u=url: client().get(u)).json()  # type: ignore[misc]
        records.extend(page.get("records", []))
    return records
