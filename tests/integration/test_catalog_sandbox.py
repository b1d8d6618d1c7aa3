"""Every catalog tool against a real `opsgate sandbox` process, through its adapter.

Each tool is called the way the executor calls it (`spec.invoke(spec.parse_args(args), key)`),
so requests go over real HTTP in each system's wire format (form encoding for Stripe, JSON for
Zendesk, Salesforce and Okta). The sandbox's ledger of received writes is the witness for
exactly-once: an idempotent replay or a write skipped by the "already processed" pre-read is
not a second `applied` entry.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.errors import ConflictError, PermanentError, RetryableError
from tests.support.env import reset_process_state
from tests.support.sandbox import Sandbox
from tools.base import raise_for_http
from tools.catalog import CATALOG, get_tool, marker
from tools.okta import client as okta_api
from tools.sandbox import seed
from tools.sandbox.salesforce.model import id18
from tools.stripe import client as stripe_api
from tools.zendesk import client as zendesk_api

pytestmark = pytest.mark.integration

INV = seed.INVOICE_IDS
PO = seed.PURCHASE_ORDER_IDS
OKTA = {u.login.split("@")[0]: u for u in seed.OKTA_USERS}  # alice, bob, carol, dave, erin
GROUP = {g.name: g.id for g in seed.OKTA_GROUPS}
SF_BASE = "/services/data/v60.0/sobjects/Invoice__c"

WRITE_TOOLS = sorted(name for name, spec in CATALOG.items() if spec.risk != "read")
READ_TOOLS = sorted(name for name, spec in CATALOG.items() if spec.risk == "read")


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def sb(clean_env, sandbox: Sandbox) -> Sandbox:
    """A fresh sandbox (settings cleaned first, then pointed at it)."""
    return sandbox


def call(tool: str, args: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Call a catalog tool exactly as the executor does."""
    spec = get_tool(tool)
    return spec.invoke(spec.parse_args(args), key)


def set_faults(sb: Sandbox, **spec: Any) -> None:
    httpx.post(f"{sb.url}/_sandbox/faults", json=spec, timeout=10).raise_for_status()


def clear_faults(sb: Sandbox) -> None:
    httpx.delete(f"{sb.url}/_sandbox/faults", timeout=10).raise_for_status()


def outcomes(sb: Sandbox, system: str) -> list[str]:
    return [w["outcome"] for w in sb.ledger(system=system)]


def invoice(label: str) -> dict[str, Any]:
    return call("salesforce.get_invoice", {"invoice_id": INV[label]})["invoice"]


def okta_user(login_or_id: str) -> dict[str, Any]:
    return call("okta.get_user", {"login": login_or_id})["user"]


def test_catalog_is_the_one_in_the_design():
    # Guard: the tests below cover every tool; a new tool must get tests here too.
    assert READ_TOOLS == [
        "okta.get_user",
        "salesforce.get_invoice",
        "stripe.get_charge",
        "zendesk.get_ticket",
    ]
    assert WRITE_TOOLS == [
        "okta.add_to_group",
        "okta.reset_password",
        "okta.suspend_user",
        "salesforce.approve_payment",
        "salesforce.update_invoice",
        "stripe.refund",
        "zendesk.add_comment",
        "zendesk.update_ticket",
    ]


# --- reads ----------------------------------------------------------------------------------


def test_zendesk_get_ticket_returns_the_seeded_ticket(sb):
    ticket = call("zendesk.get_ticket", {"ticket_id": 4821})["ticket"]
    assert ticket["id"] == 4821
    assert ticket["subject"] == "Refund for duplicate charge"
    assert ticket["requester_id"] == 101
    assert ticket["status"] == "open"
    assert ticket["tags"] == ["refund"]
    assert "ch_1001" in ticket["description"]
    assert sb.ledger() == []  # reads are not writes


def test_stripe_get_charge_returns_the_seeded_charge(sb):
    charge = call("stripe.get_charge", {"charge_id": "ch_1001"})["charge"]
    assert isinstance(charge, dict)  # a plain dict, not a StripeObject
    assert (charge["id"], charge["object"]) == ("ch_1001", "charge")
    assert (charge["amount"], charge["currency"], charge["amount_refunded"]) == (2500, "usd", 0)
    assert charge["customer"] == "cus_alice"
    assert charge["billing_details"]["email"] == "alice@example.com"
    assert sb.ledger() == []


def test_salesforce_get_invoice_returns_the_seeded_invoice(sb):
    record = invoice("INV-1002")
    assert record["Id"] == INV["INV-1002"]
    assert record["attributes"]["type"] == "Invoice__c"
    assert record["Name"] == "INV-1002"
    assert record["Vendor__c"] == "Globex Parts"
    assert record["Amount__c"] == 880.0
    assert record["Purchase_Order__c"] == PO["PO-5002"]
    assert record["Status__c"] == "Exception"
    assert record["Exception_Reason__c"] == "amount differs from PO"
    assert sb.ledger() == []


def test_okta_get_user_by_login_and_by_id_is_the_same_user(sb):
    alice = OKTA["alice"]
    by_login = okta_user(alice.login)
    by_id = okta_user(alice.id)
    assert by_login["id"] == by_id["id"] == alice.id
    assert by_login["profile"]["login"] == by_id["profile"]["login"] == "alice@example.com"
    assert by_login["status"] == "ACTIVE"
    assert (by_login["profile"]["firstName"], by_login["profile"]["lastName"]) == (
        "Alice",
        "Adams",
    )
    assert sb.ledger() == []


@pytest.mark.parametrize(
    ("tool", "args", "system_error"),
    [
        ("zendesk.get_ticket", {"ticket_id": 999999}, "RecordNotFound"),
        ("stripe.get_charge", {"charge_id": "ch_nosuch"}, "resource_missing"),
        ("salesforce.get_invoice", {"invoice_id": id18("a01Dn00000zzzzz")}, "NOT_FOUND"),
        ("okta.get_user", {"login": "nobody@example.com"}, "E0000007"),
        ("okta.get_user", {"login": "00u9nosuchuserXXX0h7"}, "E0000007"),
    ],
)
def test_unknown_ids_are_permanent_errors_naming_the_systems_error(sb, tool, args, system_error):
    with pytest.raises(PermanentError) as err:
        call(tool, args)
    assert system_error in str(err.value)
    assert not isinstance(err.value, RetryableError)


# --- writes: effect, one applied write, and no second effect on a repeat --------------------


def test_zendesk_add_comment_once_then_the_marker_is_found(sb):
    key = "opsgate-test-s1"
    before = zendesk_api.list_comments(4821)
    # When a private note is added under a step key
    first = call(
        "zendesk.add_comment", {"ticket_id": 4821, "body": "Refund issued.", "public": False}, key
    )
    assert first["already_applied"] is False
    # Then it is on the ticket, once, private, carrying the step's marker
    comments = zendesk_api.list_comments(4821)
    assert len(comments) == len(before) + 1
    note = comments[-1]
    assert note["body"].startswith("Refund issued.")
    assert marker(key) in note["body"] and note["public"] is False
    # And the sandbox received exactly one write: a PUT of the ticket with that comment
    [write] = sb.ledger(system="zendesk")
    assert (write["method"], write["path"], write["outcome"]) == (
        "PUT",
        "/api/v2/tickets/4821.json",
        "applied",
    )
    assert write["body"]["ticket"]["comment"] == {"body": note["body"], "public": False}
    # When the same step runs again (a redelivery)
    again = call(
        "zendesk.add_comment", {"ticket_id": 4821, "body": "Refund issued.", "public": False}, key
    )
    # Then the marker is found: no write at all, the earlier comment is returned
    assert again["already_applied"] is True
    assert again["comment"]["id"] == note["id"]
    assert len(sb.ledger(system="zendesk")) == 1
    assert len(zendesk_api.list_comments(4821)) == len(before) + 1


def test_zendesk_add_comment_under_another_key_is_a_new_comment(sb):
    # The marker is per step key: another step with the same text is another comment.
    args = {"ticket_id": 4822, "body": "Same text", "public": True}
    assert call("zendesk.add_comment", args, "opsgate-test-a")["already_applied"] is False
    assert call("zendesk.add_comment", args, "opsgate-test-b")["already_applied"] is False
    assert outcomes(sb, "zendesk") == ["applied", "applied"]
    bodies = [c["body"] for c in zendesk_api.list_comments(4822)]
    assert sum(marker("opsgate-test-a") in b for b in bodies) == 1
    assert sum(marker("opsgate-test-b") in b for b in bodies) == 1


def test_zendesk_update_ticket_once_then_already_applied(sb):
    args = {"ticket_id": 4822, "status": "pending", "priority": "high", "tags": ["refund", "vip"]}
    first = call("zendesk.update_ticket", args, "opsgate-test-s2")
    assert first["already_applied"] is False
    # Read back through the adapter
    ticket = call("zendesk.get_ticket", {"ticket_id": 4822})["ticket"]
    assert (ticket["status"], ticket["priority"], ticket["tags"]) == (
        "pending",
        "high",
        ["refund", "vip"],
    )
    [write] = sb.ledger(system="zendesk")
    assert (write["method"], write["path"], write["outcome"]) == (
        "PUT",
        "/api/v2/tickets/4822.json",
        "applied",
    )
    assert write["body"] == {
        "ticket": {"status": "pending", "priority": "high", "tags": ["refund", "vip"]}
    }
    # Again: the ticket already has those values, so nothing is sent
    again = call("zendesk.update_ticket", args, "opsgate-test-s2")
    assert again["already_applied"] is True
    assert len(sb.ledger(system="zendesk")) == 1


def test_zendesk_update_ticket_repeat_with_tags_zendesk_normalizes_is_not_a_second_write(sb):
    args = {"ticket_id": 4823, "tags": ["refund", "VIP"]}
    assert call("zendesk.update_ticket", args, "opsgate-test-s3")["already_applied"] is False
    assert call("zendesk.get_ticket", {"ticket_id": 4823})["ticket"]["tags"] == ["refund", "vip"]
    again = call("zendesk.update_ticket", args, "opsgate-test-s3")
    assert again["already_applied"] is True
    assert outcomes(sb, "zendesk") == ["applied"]


def test_stripe_refund_once_then_replayed_by_its_idempotency_key(sb):
    key = "opsgate-test-s4"
    args = {"charge_id": "ch_1002", "amount": 1500, "currency": "usd", "reason": "duplicate"}
    refund = call("stripe.refund", args, key)
    assert (refund["object"], refund["charge"], refund["amount"]) == ("refund", "ch_1002", 1500)
    assert refund["metadata"] == {"opsgate_step": key}
    # Read back: the charge is partly refunded, by exactly this refund
    assert call("stripe.get_charge", {"charge_id": "ch_1002"})["charge"]["amount_refunded"] == 1500
    assert [r["id"] for r in stripe_api.list_refunds("ch_1002")] == [refund["id"]]
    # On the wire: a form-encoded POST /v1/refunds carrying the Idempotency-Key
    [write] = sb.ledger(system="stripe")
    assert (write["method"], write["path"], write["outcome"]) == ("POST", "/v1/refunds", "applied")
    assert write["idempotency_key"] == key
    assert write["body"]["charge"] == "ch_1002" and write["body"]["amount"] == "1500"
    assert write["body"]["reason"] == "duplicate"
    # When the same step is sent again
    again = call("stripe.refund", args, key)
    # Then Stripe replays the first answer: same refund, no second effect
    assert again["id"] == refund["id"]
    assert outcomes(sb, "stripe") == ["applied", "replayed"]
    assert call("stripe.get_charge", {"charge_id": "ch_1002"})["charge"]["amount_refunded"] == 1500
    assert len(stripe_api.list_refunds("ch_1002")) == 1


def test_stripe_refund_same_key_other_amount_is_a_conflict_not_a_second_refund(sb):
    key = "opsgate-test-s5"
    call("stripe.refund", {"charge_id": "ch_1003", "amount": 2000, "currency": "usd"}, key)
    with pytest.raises(ConflictError) as err:
        call("stripe.refund", {"charge_id": "ch_1003", "amount": 3000, "currency": "usd"}, key)
    assert "idempotency" in str(err.value).lower()
    assert outcomes(sb, "stripe") == ["applied", "rejected"]
    assert len(sb.applied("stripe")) == 1
    assert call("stripe.get_charge", {"charge_id": "ch_1003"})["charge"]["amount_refunded"] == 2000


def test_salesforce_update_invoice_once_then_already_applied(sb):
    fields = {"Status__c": "On Hold", "Hold_Reason__c": "waiting for a credit note"}
    args = {"invoice_id": INV["INV-1001"], "fields": fields}
    first = call("salesforce.update_invoice", args, "opsgate-test-s6")
    assert first["already_applied"] is False
    record = invoice("INV-1001")
    assert (record["Status__c"], record["Hold_Reason__c"]) == (
        "On Hold",
        "waiting for a credit note",
    )
    assert record["Amount__c"] == 1200.0  # untouched
    [write] = sb.ledger(system="salesforce")
    assert (write["method"], write["path"], write["outcome"]) == (
        "PATCH",
        f"{SF_BASE}/{INV['INV-1001']}",
        "applied",
    )
    assert write["body"] == fields
    again = call("salesforce.update_invoice", args, "opsgate-test-s6")
    assert again["already_applied"] is True
    assert len(sb.ledger(system="salesforce")) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"Amount__c": "800.00"},
        {"Exception_Reason__c": ""},
        {"Purchase_Order__c": PO["PO-5001"][:15]},  # INV-1002 is on PO-5002 now
    ],
    ids=["amount-as-text", "empty-clears", "15-char-id"],
)
def test_salesforce_update_invoice_repeat_with_values_salesforce_coerces_is_not_a_second_write(
    sb, fields
):
    args = {"invoice_id": INV["INV-1002"], "fields": fields}
    assert call("salesforce.update_invoice", args, "opsgate-test-s7")["already_applied"] is False
    again = call("salesforce.update_invoice", args, "opsgate-test-s7")
    assert again["already_applied"] is True
    assert outcomes(sb, "salesforce") == ["applied"]


def test_salesforce_approve_payment_once_then_already_applied(sb):
    args = {"invoice_id": INV["INV-1002"], "amount": "880.00"}
    first = call("salesforce.approve_payment", args, "opsgate-test-s8")
    assert first == {"id": INV["INV-1002"], "status": "Approved", "already_applied": False}
    assert invoice("INV-1002")["Status__c"] == "Approved"
    [write] = sb.ledger(system="salesforce")
    assert (write["method"], write["path"], write["outcome"]) == (
        "PATCH",
        f"{SF_BASE}/{INV['INV-1002']}",
        "applied",
    )
    assert write["body"] == {"Status__c": "Approved"}
    again = call("salesforce.approve_payment", args, "opsgate-test-s8")
    assert again["already_applied"] is True
    assert len(sb.ledger(system="salesforce")) == 1


def test_salesforce_approve_payment_with_another_amount_is_refused_before_any_write(sb):
    # INV-1002 is for 880.00; the PO says 800.00
    with pytest.raises(PermanentError) as err:
        call(
            "salesforce.approve_payment",
            {"invoice_id": INV["INV-1002"], "amount": Decimal("800.00")},
            "opsgate-test-s9",
        )
    assert "880" in str(err.value)
    assert sb.ledger() == []
    assert invoice("INV-1002")["Status__c"] == "Exception"


def test_salesforce_approve_payment_of_a_paid_invoice_is_refused_by_salesforce(sb):
    with pytest.raises(PermanentError) as err:
        call(
            "salesforce.approve_payment",
            {"invoice_id": INV["INV-1007"], "amount": "800.00"},
            "opsgate-test-s10",
        )
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in str(err.value)
    assert outcomes(sb, "salesforce") == ["rejected"]
    assert invoice("INV-1007")["Status__c"] == "Paid"


def test_okta_reset_password_once_then_already_applied_while_in_recovery(sb):
    alice = OKTA["alice"]
    first = call("okta.reset_password", {"user_id": alice.id}, "opsgate-test-s11")
    assert first["already_applied"] is False
    assert okta_user(alice.id)["status"] == "RECOVERY"
    [write] = sb.ledger(system="okta")
    assert (write["method"], write["path"], write["outcome"]) == (
        "POST",
        f"/api/v1/users/{alice.id}/lifecycle/reset_password",
        "applied",
    )
    assert write["body"] == {"sendEmail": "true"}  # Okta emails the user; no URL comes back
    again = call("okta.reset_password", {"user_id": alice.id}, "opsgate-test-s11")
    assert again["already_applied"] is True
    assert len(sb.ledger(system="okta")) == 1


def test_okta_add_to_group_once_then_already_applied(sb):
    bob, engineering = OKTA["bob"], GROUP["Engineering"]
    args = {"user_id": bob.id, "group_id": engineering}
    assert engineering not in {g["id"] for g in okta_api.user_groups(bob.id)}
    first = call("okta.add_to_group", args, "opsgate-test-s12")
    assert first == {"id": f"{engineering}/{bob.id}", "already_applied": False}
    assert engineering in {g["id"] for g in okta_api.user_groups(bob.id)}
    [write] = sb.ledger(system="okta")
    assert (write["method"], write["path"], write["outcome"]) == (
        "PUT",
        f"/api/v1/groups/{engineering}/users/{bob.id}",
        "applied",
    )
    again = call("okta.add_to_group", args, "opsgate-test-s12")
    assert again["already_applied"] is True
    assert len(sb.ledger(system="okta")) == 1  # not even a no-op PUT


def test_okta_suspend_user_once_then_already_applied(sb):
    dave = OKTA["dave"]
    first = call("okta.suspend_user", {"user_id": dave.id}, "opsgate-test-s13")
    assert first["already_applied"] is False
    assert okta_user(dave.id)["status"] == "SUSPENDED"
    [write] = sb.ledger(system="okta")
    assert (write["method"], write["path"], write["outcome"]) == (
        "POST",
        f"/api/v1/users/{dave.id}/lifecycle/suspend",
        "applied",
    )
    again = call("okta.suspend_user", {"user_id": dave.id}, "opsgate-test-s13")
    assert again["already_applied"] is True
    assert len(sb.ledger(system="okta")) == 1


def test_okta_suspend_of_an_already_suspended_user_writes_nothing(sb):
    carol = OKTA["carol"]
    assert okta_user(carol.id)["status"] == "SUSPENDED"
    result = call("okta.suspend_user", {"user_id": carol.id}, "opsgate-test-s14")
    assert result == {"id": carol.id, "status": "SUSPENDED", "already_applied": True}
    assert sb.ledger() == []


def test_okta_reset_password_of_a_suspended_user_is_refused_by_okta(sb):
    carol = OKTA["carol"]
    with pytest.raises(PermanentError) as err:
        call("okta.reset_password", {"user_id": carol.id}, "opsgate-test-s15")
    assert "E0000038" in str(err.value)
    assert outcomes(sb, "okta") == ["rejected"]
    assert okta_user(carol.id)["status"] == "SUSPENDED"


# --- error mapping under injected faults ----------------------------------------------------

READ_CALLS = [
    ("stripe", "stripe.get_charge", {"charge_id": "ch_1001"}),
    ("zendesk", "zendesk.get_ticket", {"ticket_id": 4821}),
    ("salesforce", "salesforce.get_invoice", {"invoice_id": INV["INV-1001"]}),
    ("okta", "okta.get_user", {"login": "alice@example.com"}),
]
READ_IDS = [system for system, _, _ in READ_CALLS]


@pytest.mark.parametrize(("system", "tool", "args"), READ_CALLS, ids=READ_IDS)
def test_a_503_is_retryable(sb, system, tool, args):
    set_faults(sb, system=system, error_rate=1.0, error_status=503)
    with pytest.raises(RetryableError) as err:
        call(tool, args)
    assert "503" in str(err.value)
    # And once the system recovers, the same call works
    clear_faults(sb)
    assert call(tool, args)


@pytest.mark.parametrize(("system", "tool", "args"), READ_CALLS, ids=READ_IDS)
def test_a_429_is_retryable_after_the_servers_retry_after(sb, system, tool, args):
    set_faults(sb, system=system, rate_limit_rate=1.0, retry_after=7)
    with pytest.raises(RetryableError) as err:
        call(tool, args)
    assert err.value.retry_after == 7


def test_okta_429_without_retry_after_waits_until_x_rate_limit_reset(sb):
    # Real Okta answers 429 with X-Rate-Limit-Reset (epoch seconds) only: take the sandbox's
    # Okta 429 off the wire, drop its Retry-After, and map it as the adapter does.
    set_faults(sb, system="okta", rate_limit_rate=1.0, retry_after=7)
    raw = httpx.get(
        f"{sb.url}/api/v1/users/alice@example.com",
        headers={"Authorization": "SSWS sandbox-token"},
        timeout=10,
    )
    assert raw.status_code == 429 and "X-Rate-Limit-Reset" in raw.headers
    headers = {k: v for k, v in raw.headers.items() if k.lower() != "retry-after"}
    okta_429 = httpx.Response(429, headers=headers, content=raw.content)
    with pytest.raises(RetryableError) as err:
        raise_for_http("okta", okta_429)
    assert "E0000047" in str(err.value)
    assert err.value.retry_after is not None and 5.0 < err.value.retry_after <= 7.0


@pytest.mark.parametrize(("system", "tool", "args"), READ_CALLS, ids=READ_IDS)
def test_a_timeout_is_retryable_and_honours_opsgate_http_timeout(
    sb, monkeypatch, system, tool, args
):
    monkeypatch.setenv("OPSGATE_HTTP_TIMEOUT", "1")
    reset_process_state()
    # The sandbox holds the request 4s, then would answer 504: a client that ignored the
    # 1s timeout would see that 504 (also retryable) only after 4s.
    set_faults(sb, system=system, timeout_rate=1.0, timeout_seconds=4)
    started = time.monotonic()
    with pytest.raises(RetryableError):
        call(tool, args)
    assert time.monotonic() - started < 3.0


def test_a_write_refused_with_503_is_retried_under_the_same_key_once(sb):
    key = "opsgate-test-s16"
    args = {"charge_id": "ch_1004", "amount": 3000, "currency": "usd"}
    set_faults(sb, system="stripe", error_rate=1.0, error_status=503)
    with pytest.raises(RetryableError):
        call("stripe.refund", args, key)
    [refused] = sb.ledger(system="stripe")
    assert (refused["outcome"], refused["fault"], refused["status_code"]) == (
        "rejected",
        "error_503",
        503,
    )
    clear_faults(sb)
    refund = call("stripe.refund", args, key)
    assert refund["amount"] == 3000
    assert outcomes(sb, "stripe") == ["rejected", "applied"]


def test_stripe_refund_committed_then_dropped_is_replayed_on_retry(sb):
    key = "opsgate-test-s17"
    args = {"charge_id": "ch_1001", "amount": 2500, "currency": "usd"}
    # Given Stripe commits the refund but the connection drops before the answer
    set_faults(sb, system="stripe", commit_then_drop_rate=1.0)
    with pytest.raises(RetryableError):
        call("stripe.refund", args, key)
    [dropped] = sb.ledger(system="stripe")
    assert (dropped["outcome"], dropped["fault"]) == ("applied", "dropped_after_commit")
    # When the step is retried with the same key
    clear_faults(sb)
    refund = call("stripe.refund", args, key)
    # Then Stripe replays the committed refund: one effect in all
    assert refund["amount"] == 2500 and refund["metadata"] == {"opsgate_step": key}
    assert outcomes(sb, "stripe") == ["applied", "replayed"]
    assert sb.ledger(system="stripe")[1]["idempotency_key"] == key
    assert call("stripe.get_charge", {"charge_id": "ch_1001"})["charge"]["amount_refunded"] == 2500
    assert [r["id"] for r in stripe_api.list_refunds("ch_1001")] == [refund["id"]]


def test_zendesk_comment_committed_then_dropped_is_found_by_its_marker_on_retry(sb):
    key = "opsgate-test-s18"
    args = {"ticket_id": 4824, "body": "We refunded your order.", "public": True}
    set_faults(sb, system="zendesk", commit_then_drop_rate=1.0)
    with pytest.raises(RetryableError):
        call("zendesk.add_comment", args, key)
    [dropped] = sb.ledger(system="zendesk")
    assert (dropped["outcome"], dropped["fault"]) == ("applied", "dropped_after_commit")
    clear_faults(sb)
    again = call("zendesk.add_comment", args, key)
    assert again["already_applied"] is True
    assert marker(key) in again["comment"]["body"]
    assert outcomes(sb, "zendesk") == ["applied"]
    with_marker = [c for c in zendesk_api.list_comments(4824) if marker(key) in c["body"]]
    assert len(with_marker) == 1


def test_okta_add_to_group_committed_then_dropped_is_already_applied_on_retry(sb):
    erin, vpn = OKTA["erin"], GROUP["VPN Users"]
    args = {"user_id": erin.id, "group_id": vpn}
    set_faults(sb, system="okta", commit_then_drop_rate=1.0)
    with pytest.raises(RetryableError):
        call("okta.add_to_group", args, "opsgate-test-s19")
    [dropped] = sb.ledger(system="okta")
    assert (dropped["outcome"], dropped["fault"]) == ("applied", "dropped_after_commit")
    clear_faults(sb)
    again = call("okta.add_to_group", args, "opsgate-test-s19")
    assert again["already_applied"] is True
    assert outcomes(sb, "okta") == ["applied"]
    assert vpn in {g["id"] for g in okta_api.user_groups(erin.id)}


# --- invalid arguments never reach the system -----------------------------------------------

alice_id, admins = OKTA["alice"].id, GROUP["Okta Admins"]
INVALID = [
    ("zendesk.add_comment", {"ticket_id": 4821, "body": ""}, "body"),
    ("zendesk.add_comment", {"ticket_id": 0, "body": "hi"}, "ticket_id"),
    ("zendesk.add_comment", {"ticket_id": 4821, "body": "hi", "author_id": 1}, "author_id"),
    ("zendesk.update_ticket", {"ticket_id": 4821, "status": "closed"}, "status"),
    ("zendesk.update_ticket", {"ticket_id": 4821, "priority": "asap"}, "priority"),
    ("stripe.refund", {"charge_id": "ch_1001", "amount": -5, "currency": "usd"}, "amount"),
    ("stripe.refund", {"charge_id": "ch_1001", "amount": 500, "currency": "USD"}, "currency"),
    ("stripe.refund", {"charge_id": "py_1001", "amount": 500, "currency": "usd"}, "charge_id"),
    (
        "stripe.refund",
        {"charge_id": "ch_1001", "amount": 500, "currency": "usd", "reason": "goodwill"},
        "reason",
    ),
    (
        "salesforce.update_invoice",
        {"invoice_id": INV["INV-1001"], "fields": {"OwnerId": "005000000000001"}},
        "fields",
    ),
    (
        "salesforce.update_invoice",
        {"invoice_id": INV["INV-1001"], "fields": {"Status__c": "Approved"}},
        "fields",
    ),
    (
        "salesforce.update_invoice",
        {"invoice_id": "INV-1001", "fields": {"Vendor__c": "X"}},
        "invoice_id",
    ),
    ("salesforce.approve_payment", {"invoice_id": INV["INV-1002"], "amount": "0"}, "amount"),
    ("salesforce.approve_payment", {"invoice_id": INV["INV-1002"], "amount": "880.001"}, "amount"),
    ("okta.reset_password", {"user_id": "alice@example.com"}, "user_id"),
    ("okta.add_to_group", {"user_id": alice_id, "group_id": "Okta Admins"}, "group_id"),
    ("okta.add_to_group", {"user_id": alice_id}, "group_id"),
    ("okta.suspend_user", {"user_id": "00u/../admin"}, "user_id"),
]


@pytest.mark.parametrize(
    ("tool", "args", "field"), INVALID, ids=[f"{t}-{f}-{n}" for n, (t, _, f) in enumerate(INVALID)]
)
def test_invalid_arguments_are_permanent_errors_naming_the_field_and_send_nothing(
    sb, tool, args, field
):
    with pytest.raises(PermanentError) as err:
        call(tool, args, "opsgate-test-bad")
    message = str(err.value)
    assert tool in message and field in message
    assert sb.ledger() == []


def test_every_write_tool_has_an_invalid_arguments_case():
    assert {tool for tool, _, _ in INVALID} == set(WRITE_TOOLS)
