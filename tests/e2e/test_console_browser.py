"""The reviewer console in a real browser (Debian's chromium through Playwright) against a real
`opsgate api`, a real worker on PostgreSQL and Redis, and the sandbox: a support lead signs in,
filters the queue, opens an over-the-cap refund, corrects the amount, sees the revision
verified, approves it from the keyboard, and the sandbox's ledger shows one refund of the
corrected amount. The requester cannot approve their own job; a forged post is refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.fleet import start_console
from tests.support.jobs import open_escalation_id, settle, submit_ticket
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.e2e

# The support lead reviews; Carol is the customer whose ticket this is and holds a reviewer
# key too, so she may not decide it.
KEYS = "lead@example.com:reviewer:lead-key-0002,carol@example.com:reviewer:carol-key-0003"


@pytest.fixture
def console(
    pg_env: Any, sandbox: Sandbox, start_worker: Any, start_api: Any, monkeypatch: Any
) -> str:
    return start_console(monkeypatch, KEYS, start_worker, start_api)


def sign_in(page: Page, console: str, key: str) -> None:
    page.goto(f"{console}/ui/escalations")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/escalations"))


def test_a_reviewer_corrects_and_approves_an_over_the_cap_refund_from_the_keyboard(
    console: str, sandbox: Sandbox, page: Page
) -> None:
    # Given Carol's ticket 4823 asking for 90.00 USD, over the 50.00 USD autonomy cap
    job_id = submit_ticket(4823, "carol@example.com", "browser-1")
    assert settle(job_id) == "escalated"
    first = open_escalation_id(job_id)

    # The support lead signs in and narrows the queue to refunds waiting for approval
    sign_in(page, console, "lead-key-0002")
    page.get_by_label("Workflow", exact=True).select_option("support_refund")
    page.get_by_label("Reason", exact=True).select_option("approval_required")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"reason=approval_required"))
    page.locator(f"#item-{first}").click()
    expect(page.locator("#action-tool")).to_have_text("stripe.refund")
    expect(page.locator("#action-stake")).to_have_text("90.00 USD")

    # A forged post without the CSRF token is refused and changes nothing
    forged = page.request.post(
        f"{console}/ui/escalations/{first}/decision",
        form={"decision": "approve", "confirm": "yes"},
    )
    assert forged.status == 403 and "security token" in forged.text()

    # When the lead corrects the amount to 70.00 USD and sends it to be verified again
    page.get_by_text("Correct the arguments and verify again").click()
    page.locator("#arg-amount").fill("7000")
    page.locator("#revise-note").fill("customer agreed to 70")
    page.get_by_role("button", name="Verify revision 2").click()

    # Then the pipeline verifies revision 2 and asks for its approval in a new escalation
    later = page.locator("[id^=later-]")
    expect(later).to_have_count(1, timeout=60_000)
    later.click()
    expect(page.locator("#action-revision")).to_have_text("2")
    expect(page.locator("#action-stake")).to_have_text("70.00 USD")
    expect(page.locator("#checks")).to_contain_text("passed")
    expect(page.locator("#checks")).not_to_contain_text("FAILED")

    # And the lead approves it with the keyboard: tick the confirmation, tab to the button
    page.locator("#confirm").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "approve"
    page.keyboard.press("Enter")
    expect(page.locator("#decided")).to_contain_text("approve", timeout=10_000)

    # Exactly one refund, of the corrected amount, reaches Stripe
    assert settle(job_id) == "completed"
    [refund] = sandbox.applied("stripe")
    assert (refund["body"]["charge"], int(refund["body"]["amount"])) == ("ch_1003", 7000)
    page.reload()
    expect(page.locator("#changed")).to_contain_text("stripe.refund")


def test_the_requester_cannot_approve_their_own_job(
    console: str, sandbox: Sandbox, page: Page
) -> None:
    job_id = submit_ticket(4823, "carol@example.com", "browser-2")
    assert settle(job_id) == "escalated"
    esc_id = open_escalation_id(job_id)

    sign_in(page, console, "carol-key-0003")
    page.goto(f"{console}/ui/escalations/{esc_id}")

    expect(page.locator("#blocked")).to_contain_text("separation of duties")
    expect(page.locator("#approve-form")).to_have_count(0)
    # Even a post carrying her own session's token is refused by the server
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(
        f"{console}/ui/escalations/{esc_id}/decision",
        form={"decision": "approve", "confirm": "yes", "csrf_token": csrf or ""},
    )
    assert answer.status == 403 and "separation of duties" in answer.text()
    assert open_escalation_id(job_id) == esc_id
    assert sandbox.applied("stripe") == []
