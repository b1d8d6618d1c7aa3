"""The console's reviewing tools in a real browser (Debian's chromium through Playwright) against
a real `opsgate api`, a real worker on PostgreSQL and Redis, and the sandbox: a live read that
shows what changed on a charge, a bulk approval with one item skipped, a decision made with the
keyboard alone, and no serious or critical accessibility violation (axe-core) on the queue and
an item. The screenshots in the docs are taken here."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from app.core.db import session_scope
from app.intake import submissions
from app.models import Escalation
from tests.support.browser import save_screenshot
from tests.support.env import ROOT
from tests.support.fleet import start_console
from tests.support.jobs import open_escalation_id, settle, submit_ticket
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.e2e

KEYS = "lead@example.com:reviewer:lead-key-0002,ida@example.com:reviewer:ida-key-0005"
DOCS_IMAGES = ROOT / "docs" / "img"


@pytest.fixture
def console(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, start_api: Any, monkeypatch: Any
) -> str:
    return start_console(monkeypatch, KEYS, start_worker, start_api)


def offboarding(delivery: str) -> str:
    """The sample inbox's offboarding request: okta.suspend_user, always approved by a human."""
    raw = json.loads((ROOT / "examples" / "inbox" / "18-it-offboarding.json").read_text())
    job_id, _ = submissions.submit(dict(raw, delivery_id=delivery), submitted_by="test")
    return job_id


def sign_in_by_keyboard(page: Page, console: str, key: str) -> None:
    page.goto(f"{console}/ui/sign-in")
    # The key field has the focus when the page loads (autofocus): no click needed.
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/escalations"))


def tab_to(page: Page, element_id: str, limit: int = 80) -> None:
    """Press Tab until the element has the focus (as a keyboard user would)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} never got the focus with Tab")


def serious_violations(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def docs_screenshot(page: Page, name: str) -> None:
    """Keep a screenshot for the docs when asked to (UPDATE_DOCS_SCREENSHOTS=1)."""
    path = save_screenshot(page, name)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / f"{name}.png")


def test_live_read_bulk_approval_keyboard_and_accessibility(
    console: str, sandbox: Sandbox, page: Page
) -> None:
    # Given a refund over the autonomy cap and an offboarding, both waiting for approval
    refund_job = submit_ticket(4823, 103, "review-1")
    suspend_job = offboarding("review-2")
    assert settle(refund_job) == settle(suspend_job) == "escalated"
    refund, suspend = open_escalation_id(refund_job), open_escalation_id(suspend_job)

    # The lead signs in with the keyboard alone; the queue has no serious a11y violation
    sign_in_by_keyboard(page, console, "lead-key-0002")
    expect(page.locator(f"#item-{refund}")).to_be_visible()
    assert serious_violations(page) == []
    docs_screenshot(page, "console-queue")

    # A live read of the refund's charge, then someone refunds 20.00 USD of it outside opsgate
    page.locator(f"#item-{refund}").click()
    page.get_by_role("button", name="Read live").click()
    expect(page.locator("#live-verdict")).to_contain_text("Nothing changed")
    httpx.post(
        f"{sandbox.url}/v1/refunds",
        data={"charge": "ch_1003", "amount": "2000"},
        headers={"Authorization": "Bearer sk_test_sandbox"},
    ).raise_for_status()
    page.get_by_role("button", name="Read again").click()
    expect(page.locator("#live-verdict")).to_contain_text("changed since the proposal")
    expect(page.locator("#diff-1")).to_contain_text("amount_refunded")
    assert serious_violations(page) == []
    docs_screenshot(page, "console-item")

    # Bulk: both selected from the queue; meanwhile another reviewer claims the offboarding
    page.goto(f"{console}/ui/escalations")
    page.locator(f"#select-{refund}").check()
    page.locator(f"#select-{suspend}").check()
    claim = httpx.post(
        f"{console}/v1/escalations/{suspend}/claim",
        headers={"Authorization": "Bearer ida-key-0005"},
    )
    assert claim.status_code == 200, claim.text
    page.locator("#bulk-confirm").check()
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator("#bulk-approved")).to_contain_text(f"#{refund}")
    expect(page.locator("#bulk-skipped")).to_contain_text("claimed by key:ida@example.com")

    # The approved refund runs once, for its exact amount, under its own token
    assert settle(refund_job) == "completed"
    ours = [w for w in sandbox.applied("stripe") if w["idempotency_key"]]
    assert [int(w["body"]["amount"]) for w in ours] == [9000]
    assert open_escalation_id(suspend_job) == suspend

    # A decision with the keyboard alone: reject the offboarding once the claim is released
    with session_scope() as s:
        esc = s.get(Escalation, suspend)
        assert esc is not None
        esc.claimed_by, esc.claimed_until = None, None
        s.commit()
    page.goto(f"{console}/ui/escalations")
    tab_to(page, f"item-{suspend}")
    page.keyboard.press("Enter")
    expect(page.locator("#action-tool")).to_have_text("okta.suspend_user")
    assert serious_violations(page) == []
    tab_to(page, "reject-summary")
    page.keyboard.press("Enter")  # opens the reject panel
    tab_to(page, "reason_code")
    page.keyboard.press("End")  # the last reason code, "other"
    tab_to(page, "reject-note")
    page.keyboard.type("keeping access until the handover")
    tab_to(page, "reject")
    page.keyboard.press("Enter")
    expect(page.locator("#decided")).to_contain_text("reject")
    assert settle(suspend_job) == "rejected"
    assert sandbox.applied("okta") == []


def test_docs_screenshots_exist() -> None:
    for name in ("console-queue", "console-item"):
        assert (DOCS_IMAGES / f"{name}.png").is_file(), name
        assert Path(DOCS_IMAGES / f"{name}.png").stat().st_size > 10_000
