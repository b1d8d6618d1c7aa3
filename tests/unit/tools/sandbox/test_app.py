"""The downstream sandbox: Stripe and Zendesk wire formats, idempotency, ledger and reset."""

from __future__ import annotations

import base64
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from fastapi.testclient import TestClient

from tools.sandbox.app import create_app

STRIPE_AUTH = {"Authorization": "Bearer sk_test_opsgate"}
ZD_AUTH = {
    "Authorization": "Basic " + base64.b64encode(b"agent@opsgate.example/token:t0k3n").decode()
}
# starlette's TestClient answers with httpx2 or httpx responses, whichever is installed.
ClientResponse = Any
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """A sandbox over a fresh SQLite file."""
    with TestClient(create_app(str(tmp_path / "sandbox.db"))) as test_client:
        yield test_client


def refund(client: TestClient, key: str | None = None, **params: Any) -> ClientResponse:
    """POST /v1/refunds form-encoded, as stripe-python sends it."""
    form: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, dict):
            form.update({f"{name}[{k}]": v for k, v in value.items()})
        else:
            form[name] = value
    headers = {**STRIPE_AUTH, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/refunds", data=form, headers=headers)


def charge(client: TestClient, charge_id: str) -> dict[str, Any]:
    """GET /v1/charges/{id} as JSON."""
    response = client.get(f"/v1/charges/{charge_id}", headers=STRIPE_AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def put_ticket(client: TestClient, ticket_id: int, ticket: dict[str, Any]) -> ClientResponse:
    """PUT /api/v2/tickets/{id}.json."""
    return client.put(f"/api/v2/tickets/{ticket_id}.json", json={"ticket": ticket}, headers=ZD_AUTH)


def comments(client: TestClient, ticket_id: int) -> list[dict[str, Any]]:
    """The ticket's comments, oldest first."""
    response = client.get(f"/api/v2/tickets/{ticket_id}/comments.json", headers=ZD_AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["comments"])
    return body["comments"]


def ledger(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    """The sandbox's write ledger."""
    return client.get("/_sandbox/ledger", params=filters).json()["writes"]


# --- Stripe ---------------------------------------------------------------------------------


def test_charge_has_stripe_charge_shape(client: TestClient) -> None:
    body = charge(client, "ch_1001")

    assert body["id"] == "ch_1001"
    assert body["object"] == "charge"
    assert (body["amount"], body["amount_captured"], body["amount_refunded"]) == (2500, 2500, 0)
    assert body["currency"] == "usd"
    assert body["customer"] == "cus_alice"
    assert body["billing_details"]["email"] == body["receipt_email"] == "alice@example.com"
    assert body["billing_details"]["name"] == "Alice Adams"
    assert body["refunded"] is False
    assert (body["paid"], body["captured"], body["status"]) == (True, True, "succeeded")
    assert body["livemode"] is False and body["metadata"] == {}
    assert isinstance(body["created"], int)
    assert charge(client, "ch_1005")["refunded"] is True
    assert charge(client, "ch_1006")["currency"] == "eur"


def test_unknown_charge_is_resource_missing(client: TestClient) -> None:
    response = client.get("/v1/charges/ch_x", headers=STRIPE_AUTH)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == ("resource_missing", "id")
    assert error["message"] == "No such charge: 'ch_x'"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer pk_test_x"}, {"Authorization": "Basic !!"}],
)
def test_stripe_rejects_missing_or_non_secret_keys(
    client: TestClient, headers: dict[str, str]
) -> None:
    read = client.get("/v1/charges/ch_1001", headers=headers)
    write = client.post("/v1/refunds", data={"charge": "ch_1001"}, headers=headers)

    for response in (read, write):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert charge(client, "ch_1001")["amount_refunded"] == 0
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]


def test_refund_is_applied_and_updates_charge(client: TestClient) -> None:
    first = refund(
        client, "k-1", charge="ch_1002", amount=1000, reason="duplicate", metadata={"job": "j1"}
    )

    assert first.status_code == 200, first.text
    body = first.json()
    assert body["id"].startswith("re_") and body["object"] == "refund"
    assert (body["amount"], body["charge"], body["currency"]) == (1000, "ch_1002", "usd")
    assert (body["status"], body["reason"], body["metadata"]) == (
        "succeeded",
        "duplicate",
        {"job": "j1"},
    )
    after_first = charge(client, "ch_1002")
    assert (after_first["amount_refunded"], after_first["refunded"]) == (1000, False)

    rest = refund(client, "k-2", charge="ch_1002")  # amount omitted: the remaining 3000

    assert rest.status_code == 200 and rest.json()["amount"] == 3000
    after_rest = charge(client, "ch_1002")
    assert (after_rest["amount_refunded"], after_rest["refunded"]) == (4000, True)
    listed = client.get("/v1/refunds", params={"charge": "ch_1002"}, headers=STRIPE_AUTH).json()
    assert listed["object"] == "list" and listed["url"] == "/v1/refunds"
    assert [r["id"] for r in listed["data"]] == [rest.json()["id"], body["id"]]
    assert listed["has_more"] is False
    one = client.get(f"/v1/refunds/{body['id']}", headers=STRIPE_AUTH)
    assert one.json() == body
    assert [w["outcome"] for w in ledger(client)] == ["applied", "applied"]
    assert ledger(client)[0]["body"] == {
        "charge": "ch_1002",
        "amount": "1000",
        "reason": "duplicate",
        "metadata": {"job": "j1"},
    }


def test_refund_list_limit_sets_has_more(client: TestClient) -> None:
    for n in range(3):
        assert refund(client, f"k-{n}", charge="ch_1003", amount=100).status_code == 200

    page = client.get("/v1/refunds", params={"charge": "ch_1003", "limit": 2}, headers=STRIPE_AUTH)

    assert len(page.json()["data"]) == 2 and page.json()["has_more"] is True


def test_idempotent_replay_returns_stored_response_without_second_effect(
    client: TestClient,
) -> None:
    params = {"charge": "ch_1001", "amount": 2500, "reason": "requested_by_customer"}
    first = refund(client, "job-1:s1", **params)
    second = refund(client, "job-1:s1", **params)

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert charge(client, "ch_1001")["amount_refunded"] == 2500
    listed = client.get("/v1/refunds", params={"charge": "ch_1001"}, headers=STRIPE_AUTH).json()
    assert len(listed["data"]) == 1
    assert [(w["idempotency_key"], w["outcome"]) for w in ledger(client)] == [
        ("job-1:s1", "applied"),
        ("job-1:s1", "replayed"),
    ]


def test_same_key_with_different_parameters_is_idempotency_error(client: TestClient) -> None:
    assert refund(client, "k", charge="ch_1003", amount=1000).status_code == 200

    reused = refund(client, "k", charge="ch_1003", amount=2000)

    assert reused.status_code == 400
    error = reused.json()["error"]
    assert error["type"] == "idempotency_error"
    assert error["message"] == (
        "Keys for idempotent requests can only be used with the same parameters they were "
        "first used with. Try using a key other than 'k' if you meant to execute a different "
        "request."
    )
    assert charge(client, "ch_1003")["amount_refunded"] == 1000
    assert [w["outcome"] for w in ledger(client)] == ["applied", "rejected"]


def test_keys_are_scoped_per_api_key(client: TestClient) -> None:
    other = {"Authorization": "Bearer sk_test_other", "Idempotency-Key": "shared"}
    assert refund(client, "shared", charge="ch_1003", amount=100).status_code == 200

    response = client.post("/v1/refunds", data={"charge": "ch_1003", "amount": 200}, headers=other)

    assert response.status_code == 200
    assert charge(client, "ch_1003")["amount_refunded"] == 300


def test_fully_refunded_charge_is_charge_already_refunded_and_replays(
    client: TestClient,
) -> None:
    response = refund(client, "k-1005", charge="ch_1005", amount=500)
    again = refund(client, "k-1005", charge="ch_1005", amount=500)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "charge_already_refunded")
    # Business errors happen after execution began, so Stripe saves and replays them.
    assert again.content == response.content and again.headers["Idempotent-Replayed"] == "true"
    assert [w["outcome"] for w in ledger(client)] == ["rejected", "replayed"]


def test_amount_above_remaining_is_rejected_with_stripes_message(client: TestClient) -> None:
    whole = refund(client, charge="ch_1001", amount=2600)
    assert refund(client, charge="ch_1001", amount=1000).status_code == 200
    partial = refund(client, charge="ch_1001", amount=1600)

    assert whole.status_code == partial.status_code == 400
    assert whole.json()["error"]["param"] == partial.json()["error"]["param"] == "amount"
    assert whole.json()["error"]["message"] == (
        "Refund amount ($26.00) is greater than charge amount ($25.00)"
    )
    assert partial.json()["error"]["message"] == (
        "Refund amount ($16.00) is greater than unrefunded amount on charge ($15.00)"
    )
    assert charge(client, "ch_1001")["amount_refunded"] == 1000


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"charge": "ch_1001", "amount": "0"}, "amount"),
        ({"charge": "ch_1001", "amount": "-5"}, "amount"),
        ({"charge": "ch_1001", "amount": "12.50"}, "amount"),
        ({"charge": "ch_1001", "amount": "abc"}, "amount"),
        ({"charge": "ch_1001", "reason": "because"}, "reason"),
        ({"amount": "100"}, "charge"),
        ({"charge": "ch_1001", "bogus": "1"}, "bogus"),
    ],
)
def test_invalid_parameters_are_rejected(
    client: TestClient, params: dict[str, str], param: str
) -> None:
    response = refund(client, "k-invalid", **params)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param
    assert charge(client, "ch_1001")["amount_refunded"] == 0
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]
    # Validation failures are not saved under the key (Stripe saves results only once the
    # endpoint starts executing), so the corrected request may reuse it.
    fixed = refund(client, "k-invalid", charge="ch_1001", amount=100)
    assert fixed.status_code == 200


def test_refund_of_unknown_charge_is_resource_missing(client: TestClient) -> None:
    response = refund(client, charge="ch_nope", amount=100)

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("resource_missing", "charge")
    assert error["message"] == "No such charge: 'ch_nope'"


def test_currency_mismatch_is_rejected(client: TestClient) -> None:
    response = refund(client, charge="ch_1006", amount=100, currency="usd")

    assert response.status_code == 400 and response.json()["error"]["param"] == "currency"
    assert charge(client, "ch_1006")["amount_refunded"] == 0


# --- Zendesk --------------------------------------------------------------------------------


def test_ticket_has_zendesk_shape(client: TestClient) -> None:
    response = client.get("/api/v2/tickets/4821.json", headers=ZD_AUTH)

    assert response.status_code == 200
    ticket = response.json()["ticket"]
    assert ticket["id"] == 4821
    assert ticket["url"].endswith("/api/v2/tickets/4821.json")
    assert ticket["subject"] == "Refund for duplicate charge"
    assert ticket["description"] == (
        "Hi, I was charged twice for my order. Please refund $25.00 for charge ch_1001. "
        "Thanks, Alice"
    )
    assert (ticket["status"], ticket["priority"], ticket["tags"]) == ("open", "normal", ["refund"])
    assert ticket["requester_id"] == ticket["submitter_id"] == 101
    assert ticket["via"] == {"channel": "email"} and ticket["custom_fields"] == []
    for name in ("type", "assignee_id", "group_id", "organization_id", "external_id"):
        assert name in ticket
    assert ISO_Z.fullmatch(ticket["created_at"]) and ISO_Z.fullmatch(ticket["updated_at"])


def test_zendesk_errors(client: TestClient) -> None:
    missing = client.get("/api/v2/tickets/9999.json", headers=ZD_AUTH)
    unauthenticated = client.get("/api/v2/tickets/4821.json")
    write = client.put("/api/v2/tickets/4821.json", json={"ticket": {"status": "solved"}})

    assert missing.status_code == 404
    assert missing.json() == {"error": "RecordNotFound", "description": "Not found"}
    assert unauthenticated.status_code == write.status_code == 401
    assert unauthenticated.json() == {"error": "Couldn't authenticate you"}
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]


def test_user_read(client: TestClient) -> None:
    response = client.get("/api/v2/users/101.json", headers=ZD_AUTH)

    user = response.json()["user"]
    assert (user["id"], user["name"], user["email"], user["role"]) == (
        101,
        "Alice Adams",
        "alice@example.com",
        "end-user",
    )
    assert client.get("/api/v2/users/900.json", headers=ZD_AUTH).json()["user"]["role"] == "agent"
    assert client.get("/api/v2/users/5.json", headers=ZD_AUTH).status_code == 404


def test_description_is_first_public_comment_by_requester(client: TestClient) -> None:
    [first] = comments(client, 4822)

    assert first["type"] == "Comment" and first["public"] is True
    assert first["author_id"] == 102
    assert (
        first["body"]
        == first["plain_body"]
        == ("Please refund 40.00 USD on charge ch_1002, the product never arrived.")
    )
    assert first["attachments"] == []


def test_comment_is_appended_and_visible(client: TestClient) -> None:
    note = {"body": "opsgate: refunded 2500 usd (re_1)", "public": False}
    response = put_ticket(client, 4821, {"comment": note, "status": "pending", "tags": ["refund"]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ticket"]["status"] == "pending"
    audit = body["audit"]
    assert (audit["ticket_id"], audit["author_id"]) == (4821, 900)
    assert [e["type"] for e in audit["events"]] == ["Comment", "Change"]
    assert audit["events"][1]["field_name"] == "status"
    thread = comments(client, 4821)
    assert [c["author_id"] for c in thread] == [101, 900]
    assert (thread[1]["body"], thread[1]["public"]) == (note["body"], False)
    assert thread[1]["id"] == audit["events"][0]["id"]
    # No idempotency keys in Zendesk: the same PUT again is a second comment.
    assert put_ticket(client, 4821, {"comment": note}).status_code == 200
    assert len(comments(client, 4821)) == 3
    assert [w["outcome"] for w in ledger(client, system="zendesk")] == ["applied", "applied"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "done"}, "status"),
        ({"priority": "asap"}, "priority"),
        ({"status": "new"}, "status"),
    ],
)
def test_invalid_field_values_are_422(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    response = put_ticket(client, 4823, {**change, "comment": {"body": "x"}})

    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["description"]) == ("RecordInvalid", "Record validation errors")
    assert body["details"][field][0]["description"]
    ticket = client.get("/api/v2/tickets/4823.json", headers=ZD_AUTH).json()["ticket"]
    assert (ticket["status"], ticket["priority"]) == ("open", "normal")
    assert len(comments(client, 4823)) == 1
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]


def test_closed_ticket_cannot_be_updated(client: TestClient) -> None:
    response = put_ticket(client, 4829, {"comment": {"body": "Refunded.", "public": True}})

    assert response.status_code == 422
    assert response.json()["error"] == "RecordInvalid"
    assert "closed" in response.json()["details"]["status"][0]["description"]
    assert len(comments(client, 4829)) == 1
    ticket = client.get("/api/v2/tickets/4829.json", headers=ZD_AUTH).json()["ticket"]
    assert ticket["status"] == "closed"


# --- ledger and control ---------------------------------------------------------------------


def test_ledger_filters_and_order(client: TestClient) -> None:
    refund(client, "a", charge="ch_1004", amount=100)
    refund(client, "a", charge="ch_1004", amount=100)
    refund(client, charge="ch_1005")
    put_ticket(client, 4824, {"comment": {"body": "hi"}})

    writes = ledger(client)
    assert [w["seq"] for w in writes] == sorted(w["seq"] for w in writes)
    assert [(w["system"], w["outcome"]) for w in writes] == [
        ("stripe", "applied"),
        ("stripe", "replayed"),
        ("stripe", "rejected"),
        ("zendesk", "applied"),
    ]
    assert [w["outcome"] for w in ledger(client, system="stripe")] == [
        "applied",
        "replayed",
        "rejected",
    ]
    assert [w["system"] for w in ledger(client, outcome="applied")] == ["stripe", "zendesk"]
    assert [w["path"] for w in ledger(client, system="zendesk", outcome="applied")] == [
        "/api/v2/tickets/4824.json"
    ]
    assert writes[3]["method"] == "PUT" and writes[3]["idempotency_key"] is None
    assert writes[3]["body"] == {"ticket": {"comment": {"body": "hi"}}}
    assert client.get("/_sandbox/ledger", params={"outcome": "nope"}).status_code == 422


def test_reset_wipes_and_reseeds(client: TestClient) -> None:
    refund(client, "k", charge="ch_1001")
    put_ticket(client, 4821, {"comment": {"body": "done"}, "status": "solved"})

    response = client.post("/_sandbox/reset")

    assert response.json() == {"ok": True}
    assert charge(client, "ch_1001")["amount_refunded"] == 0
    assert len(comments(client, 4821)) == 1
    ticket = client.get("/api/v2/tickets/4821.json", headers=ZD_AUTH).json()["ticket"]
    assert ticket["status"] == "open"
    assert ledger(client) == []
    # The key is forgotten with the rest of the state: reusing it is a fresh request.
    assert "Idempotent-Replayed" not in refund(client, "k", charge="ch_1001").headers
    seeded = client.get("/v1/refunds", params={"charge": "ch_1005"}, headers=STRIPE_AUTH).json()
    assert [(r["id"], r["amount"], r["reason"]) for r in seeded["data"]] == [
        ("re_seed_1005", 1500, "requested_by_customer")
    ]


def test_state_survives_a_new_app_on_the_same_file(tmp_path: Path) -> None:
    db = str(tmp_path / "sandbox.db")
    with TestClient(create_app(db)) as first:
        assert refund(first, charge="ch_1001", amount=500).status_code == 200

    with TestClient(create_app(db)) as second:
        assert charge(second, "ch_1001")["amount_refunded"] == 500


def test_seed_data(client: TestClient) -> None:
    expected_charges = {
        "ch_1001": ("cus_alice", 2500, "usd", 0),
        "ch_1002": ("cus_bob", 4000, "usd", 0),
        "ch_1003": ("cus_carol", 12000, "usd", 0),
        "ch_1004": ("cus_dave", 3000, "usd", 0),
        "ch_1005": ("cus_erin", 1500, "usd", 1500),
        "ch_1006": ("cus_frank", 5000, "eur", 0),
        "ch_1007": ("cus_alice", 1999, "usd", 0),
    }
    for charge_id, (customer, amount, currency, refunded) in expected_charges.items():
        body = charge(client, charge_id)
        assert (body["customer"], body["amount"], body["currency"]) == (customer, amount, currency)
        assert body["amount_refunded"] == refunded
        assert body["receipt_email"] == f"{customer.removeprefix('cus_')}@example.com"
    expected_tickets = {
        4821: (101, "open", ["refund"]),
        4822: (102, "open", ["refund"]),
        4823: (103, "open", ["refund"]),
        4824: (104, "open", ["refund"]),
        4825: (105, "open", ["refund"]),
        4826: (106, "open", ["account"]),
        4827: (106, "open", ["refund"]),
        4828: (102, "open", ["refund"]),
        4829: (101, "closed", ["refund"]),
        4830: (103, "open", ["refund"]),
    }
    for ticket_id, (requester, status, tags) in expected_tickets.items():
        ticket = client.get(f"/api/v2/tickets/{ticket_id}.json", headers=ZD_AUTH).json()["ticket"]
        assert (ticket["requester_id"], ticket["status"], ticket["tags"]) == (
            requester,
            status,
            tags,
        )
    erstattung = client.get("/api/v2/tickets/4827.json", headers=ZD_AUTH).json()["ticket"]
    assert erstattung["description"] == "Please refund €20.00 for charge ch_1006."


# --- a real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sandbox served by uvicorn in a thread on a free port."""
    db = tmp_path_factory.mktemp("sandbox") / "sandbox.db"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # Listening before uvicorn starts: early connections queue instead of being refused.
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(str(db)), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url)
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _wait_healthy(url: str, attempts: int = 200) -> None:
    """Poll /_sandbox/health until the server answers."""
    for _ in range(attempts):
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=5).json() == {"ok": True}:
                return
        except httpx.TransportError:
            continue
    raise AssertionError("sandbox did not become healthy")


def test_stripe_python_client_against_real_server(live_url: str) -> None:
    httpx.post(f"{live_url}/_sandbox/reset").raise_for_status()
    client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": live_url}, max_network_retries=0
    )

    fetched = client.v1.charges.retrieve("ch_1001")
    params: Any = {
        "charge": "ch_1001",
        "amount": 2500,
        "reason": "requested_by_customer",
        "metadata": {"opsgate_job": "j1"},
    }
    created = client.v1.refunds.create(params=params, options={"idempotency_key": "k1"})
    retried = client.v1.refunds.create(params=params, options={"idempotency_key": "k1"})
    listed = client.v1.refunds.list(params={"charge": "ch_1001"})

    assert (fetched.id, fetched.amount, fetched.currency) == ("ch_1001", 2500, "usd")
    assert fetched.billing_details.email == "alice@example.com"
    assert created.id.startswith("re_") and created.amount == 2500
    assert created.metadata is not None and created.metadata.to_dict() == {"opsgate_job": "j1"}
    assert retried.id == created.id
    assert [refund.id for refund in listed.data] == [created.id]
    assert client.v1.charges.retrieve("ch_1001").refunded is True
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create(params={"charge": "ch_1001"}, options={"idempotency_key": "k2"})
    assert excinfo.value.code == "charge_already_refunded"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(
            params={"charge": "ch_1002", "amount": 100}, options={"idempotency_key": "k1"}
        )
    writes = httpx.get(f"{live_url}/_sandbox/ledger", params={"system": "stripe"}).json()
    assert [w["outcome"] for w in writes["writes"]] == [
        "applied",
        "replayed",
        "rejected",
        "rejected",
    ]


def test_concurrent_writes_never_apply_twice(live_url: str) -> None:
    httpx.post(f"{live_url}/_sandbox/reset").raise_for_status()

    def post(key: str) -> httpx.Response:
        """One refund of 1000 on ch_1003 under the given key."""
        return httpx.post(
            f"{live_url}/v1/refunds",
            data={"charge": "ch_1003", "amount": "1000"},
            headers={**STRIPE_AUTH, "Idempotency-Key": key},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        same_key = list(pool.map(post, ["same"] * 16))
        distinct = list(pool.map(post, [f"k{n}" for n in range(16)]))

    assert {r.status_code for r in same_key} == {200}
    assert len({r.json()["id"] for r in same_key}) == 1
    # 12000 on the charge, 1000 already refunded by the "same" key: 11 more fit.
    assert sorted(r.status_code for r in distinct) == [200] * 11 + [400] * 5
    fetched = httpx.get(f"{live_url}/v1/charges/ch_1003", headers=STRIPE_AUTH).json()
    assert (fetched["amount_refunded"], fetched["refunded"]) == (12000, True)
    writes = httpx.get(f"{live_url}/_sandbox/ledger").json()["writes"]
    outcomes = [w["outcome"] for w in writes]
    assert (outcomes.count("applied"), outcomes.count("replayed")) == (12, 15)
    assert outcomes.count("rejected") == 5


def test_added_tickets_carry_their_comments_and_leave_the_ledger_alone(
    client: TestClient,
) -> None:
    # Given a ticket added through the control endpoint, with a later comment
    added = client.post(
        "/_sandbox/tickets",
        json=[
            {
                "id": 7001,
                "requester_id": 101,
                "subject": "Refund",
                "description": "Please refund $5.00 for charge ch_1001.",
                "comments": [{"author_id": 101, "body": "Never mind, cancel my refund."}],
            }
        ],
    )
    assert added.status_code == 200 and added.json() == {"added": [7001]}
    # Then Zendesk serves it like any ticket: description first, then the comment
    ticket = client.get("/api/v2/tickets/7001.json", headers=ZD_AUTH).json()["ticket"]
    assert (ticket["status"], ticket["requester_id"]) == ("open", 101)
    comments = client.get("/api/v2/tickets/7001/comments.json", headers=ZD_AUTH).json()
    assert [c["body"] for c in comments["comments"]] == [
        "Please refund $5.00 for charge ch_1001.",
        "Never mind, cancel my refund.",
    ]
    # And no write is in the ledger; a second add of the same id is refused
    assert client.get("/_sandbox/ledger").json()["writes"] == []
    again = client.post(
        "/_sandbox/tickets",
        json=[{"id": 7001, "requester_id": 101, "subject": "x", "description": "y"}],
    )
    assert again.status_code == 409


def test_charges_can_be_added_with_their_age_and_an_open_dispute(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from tools.sandbox.app import create_app

    client = TestClient(create_app(str(tmp_path / "sandbox.db")))
    zoe = {"id": "ch_old1", "customer_id": "cus_zoe", "customer_email": "zoe@example.com"}
    zoe |= {"amount": 4200, "currency": "usd"}

    def charge() -> dict:
        resp = client.get("/v1/charges/ch_old1", headers={"Authorization": "Bearer sk_test_x"})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    resp = client.post(
        "/_sandbox/charges", json=[{**zoe, "created": 1_700_000_000, "disputed": True}]
    )
    assert resp.status_code == 200, resp.text
    body = charge()
    assert (body["created"], body["disputed"], body["customer"]) == (1_700_000_000, True, "cus_zoe")
    assert body["billing_details"]["email"] == "zoe@example.com"
    # Added again: replaced in place, and not a Stripe write
    client.post("/_sandbox/charges", json=[{**zoe, "disputed": False}]).raise_for_status()
    assert charge()["disputed"] is False
    assert client.get("/_sandbox/ledger").json()["writes"] == []
