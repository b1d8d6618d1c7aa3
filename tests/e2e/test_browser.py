"""The browser harness itself: Debian's chromium through Playwright against a real API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.e2e


def test_the_browser_reads_the_apis_health(
    sqlite_db: Path, redis_db_url: str, start_api: Callable[..., str], page: Page
) -> None:
    # Given a real `opsgate api` on the embedded database and the shared Redis
    api = start_api({"OPSGATE_REDIS_URL": redis_db_url})
    # When the browser opens its health check
    response = page.goto(f"{api}/healthz")
    # Then it shows the JSON saying all is well
    assert response is not None and response.status == 200
    shown = page.inner_text("body")
    assert '"ok"' in shown and json.loads(shown) == {
        "ok": True,
        "checks": {"database": "ok", "redis": "ok"},
    }
