"""Fault injection in the sandbox: 5xx, 429, timeouts, latency, count, seed, environment,
lost writes ("acknowledge without applying"), and "commit then drop the connection" against a
real uvicorn server."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from fastapi.testclient import TestClient

from tools.sandbox import server as sandbox_server
from tools.sandbox.app import create_app
from tools.sandbox.seed import INVOICE_IDS, OKTA_GROUPS, OKTA_USERS

STRIPE = {"Authorization": "Bearer sk_test_opsgate"}
ZENDESK = {
    "Authorization": "Basic " + base64.b64encode(b"agent@opsgate.example/token:t0k3n").decode()
}
SALESFORCE = {"Authorization": "Bearer 00Dsession"}
OKTA = {"Authorization": "SSWS token"}
ALICE, BOB = OKTA_USERS[0].id, OKTA_USERS[1].id
ADMINS = OKTA_GROUPS[2].id
INVOICE = INVOICE_IDS["INV-1001"]
SF_INVOICE = f"/services/data/v60.0/sobjects/Invoice__c/{INVOICE}"
# A read of each system: (system, path, headers).
READS = [
    ("stripe", "/v1/charges/ch_1001", STRIPE),
    ("zendesk", "/api/v2/tickets/4821.json", ZENDESK),
    ("salesforce", SF_INVOICE, SALESFORCE),
    ("okta", f"/api/v1/users/{ALICE}", OKTA),
]
ClientResponse = Any


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A sandbox over a fresh SQLite file, started with no faults configured."""
    monkeypatch.delenv("OPSGATE_SANDBOX_FAULTS", raising=False)
    with TestClient(create_app(str(tmp_path / "sandbox.db"))) as test_client:
        yield test_client


def set_faults(client: Any, **spec: Any) -> dict[str, Any]:
    response = client.post("/_sandbox/faults", json=spec)
    assert response.status_code == 200, response.text
    return response.json()["faults"]


def refund(client: Any, key: str | None = "k-1", amount: int = 500) -> ClientResponse:
    headers = {**STRIPE, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/refunds", data={"charge": "ch_1001", "amount": amount}, headers=headers)


def refunded(client: Any) -> int:
    return int(client.get("/v1/charges/ch_1001", headers=STRIPE).json()["amount_refunded"])


def ledger(client: Any, **filters: str) -> list[dict[str, Any]]:
    return client.get("/_sandbox/ledger", params=filters).json()["writes"]


# --- the control API ------------------------------------------------------------------------


def test_faults_can_be_set_listed_replaced_and_cleared(client: TestClient) -> None:
    assert client.get("/_sandbox/faults").json() == {"faults": {}}

    faults = set_faults(client, system="stripe", error_rate=0.5, count=3, seed=1)
    assert faults["stripe"]["error_rate"] == 0.5 and faults["stripe"]["remaining"] == 3
    assert faults["stripe"]["fired"] == {}
    set_faults(client, system="stripe", latency_ms=5)  # replaces stripe's faults
    set_faults(client, system="okta", rate_limit_rate=1.0)
    listed = client.get("/_sandbox/faults").json()["faults"]
    assert set(listed) == {"stripe", "okta"}
    assert (listed["stripe"]["error_rate"], listed["stripe"]["latency_ms"]) == (0.0, 5)
    assert listed["stripe"]["count"] is None and listed["stripe"]["error_status"] == 503

    assert client.delete("/_sandbox/faults", params={"system": "okta"}).json()["faults"].keys() == {
        "stripe"
    }
    assert client.delete("/_sandbox/faults").json() == {"faults": {}}


@pytest.mark.parametrize(
    "spec",
    [
        {"system": "paypal"},
        {"system": "stripe", "error_rate": 1.5},
        {"system": "stripe", "error_status": 404},
        {"system": "stripe", "latency_ms": -1},
        {"system": "stripe", "count": 0},
        {"system": "stripe", "explode": True},
        {"error_rate": 1.0},
    ],
)
def test_invalid_fault_specs_are_422(client: TestClient, spec: dict[str, Any]) -> None:
    assert client.post("/_sandbox/faults", json=spec).status_code == 422
    assert client.get("/_sandbox/faults").json() == {"faults": {}}


def test_control_endpoints_are_never_faulted(client: TestClient) -> None:
    set_faults(client, system="*", error_rate=1.0, timeout_rate=1.0, latency_ms=0)

    assert client.get("/_sandbox/health").json() == {"ok": True}
    assert client.get("/_sandbox/ledger").status_code == 200
    assert client.post("/_sandbox/reset").status_code == 200
    assert client.get("/_sandbox/faults").status_code == 200


# --- 5xx, 429, timeouts ---------------------------------------------------------------------


def test_error_rate_answers_5xx_and_changes_nothing(client: TestClient) -> None:
    set_faults(client, system="stripe", error_rate=1.0, error_status=503)

    write = refund(client, "k-err")
    read = client.get("/v1/charges/ch_1001", headers=STRIPE)

    assert write.status_code == read.status_code == 503
    assert write.json()["error"]["type"] == "api_error" and "Request-Id" in write.headers
    [entry] = ledger(client)
    assert (entry["outcome"], entry["status_code"], entry["fault"]) == (
        "rejected",
        503,
        "error_503",
    )
    assert entry["idempotency_key"] == "k-err"
    assert entry["body"] == {"charge": "ch_1001", "amount": "500"}
    client.delete("/_sandbox/faults")
    assert refunded(client) == 0
    # The faulted attempt never reached Stripe, so its key is still fresh: applied, not replayed.
    retry = refund(client, "k-err")
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
    assert [w["outcome"] for w in ledger(client)] == ["rejected", "applied"]


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_bodies_have_each_systems_shape(client: TestClient, status: int) -> None:
    set_faults(client, system="*", error_rate=1.0, error_status=status)
    responses = {system: client.get(path, headers=h) for system, path, h in READS}

    assert {r.status_code for r in responses.values()} == {status}
    assert responses["stripe"].json()["error"]["type"] == "api_error"
    assert set(responses["zendesk"].json()) == {"error", "description"}
    [sf_error] = responses["salesforce"].json()
    expected_code = "UNKNOWN_EXCEPTION" if status == 500 else "SERVER_UNAVAILABLE"
    assert sf_error["errorCode"] == expected_code and sf_error["message"]
    okta = responses["okta"].json()
    assert (okta["errorCode"], okta["errorSummary"]) == ("E0000009", "Internal Server Error")
    assert set(okta) == {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
    assert ledger(client) == []  # reads are not on the write ledger


def test_rate_limits_have_each_systems_shape_and_retry_after(client: TestClient) -> None:
    set_faults(client, system="*", rate_limit_rate=1.0, retry_after=7)
    before = int(time.time())
    responses = {system: client.get(path, headers=h) for system, path, h in READS}

    for response in responses.values():
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    stripe_error = responses["stripe"].json()["error"]
    assert (stripe_error["type"], stripe_error["code"]) == ("invalid_request_error", "rate_limit")
    assert responses["zendesk"].headers["content-type"].startswith("text/plain")
    assert responses["zendesk"].text == "Number of allowed API requests per minute exceeded"
    assert responses["salesforce"].json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    okta = responses["okta"]
    assert okta.json()["errorCode"] == "E0000047"
    assert okta.json()["errorSummary"] == "API call exceeded rate limit due to too many requests."
    assert okta.headers["X-Rate-Limit-Remaining"] == "0"
    assert int(okta.headers["X-Rate-Limit-Limit"]) > 0
    assert int(okta.headers["X-Rate-Limit-Reset"]) >= before + 7


def test_rate_limited_writes_are_rejected_on_the_ledger(client: TestClient) -> None:
    set_faults(client, system="okta", rate_limit_rate=1.0)

    response = client.post(f"/api/v1/users/{ALICE}/lifecycle/suspend", headers=OKTA)

    assert response.status_code == 429
    [entry] = ledger(client)
    assert (entry["system"], entry["outcome"], entry["fault"]) == (
        "okta",
        "rejected",
        "rate_limited",
    )
    client.delete("/_sandbox/faults")
    assert client.get(f"/api/v1/users/{ALICE}", headers=OKTA).json()["status"] == "ACTIVE"


def test_timeout_holds_then_answers_504_without_state_change(client: TestClient) -> None:
    set_faults(client, system="salesforce", timeout_rate=1.0, timeout_seconds=0.2)

    started = time.monotonic()
    response = client.patch(SF_INVOICE, json={"Status__c": "Approved"}, headers=SALESFORCE)
    waited = time.monotonic() - started

    assert response.status_code == 504 and waited >= 0.2
    assert response.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    [entry] = ledger(client)
    assert (entry["outcome"], entry["status_code"], entry["fault"]) == ("rejected", 504, "timeout")
    assert entry["body"] == {"Status__c": "Approved"}
    client.delete("/_sandbox/faults")
    assert client.get(SF_INVOICE, headers=SALESFORCE).json()["Status__c"] == "Exception"


def test_latency_delays_each_request_by_at_least_latency_ms(client: TestClient) -> None:
    set_faults(client, system="zendesk", latency_ms=150)

    started = time.monotonic()
    response = client.get("/api/v2/tickets/4821.json", headers=ZENDESK)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.15
    assert client.get("/_sandbox/faults").json()["faults"]["zendesk"]["fired"] == {}


# --- scope: count, seed, "*", environment ---------------------------------------------------


def test_count_limits_the_fault_to_the_next_n_requests(client: TestClient) -> None:
    set_faults(client, system="okta", error_rate=1.0, error_status=502, count=2)
    path, headers = READS[3][1], OKTA

    first = client.get(path, headers=headers).status_code
    remaining = client.get("/_sandbox/faults").json()["faults"]["okta"]
    second = client.get(path, headers=headers).status_code
    third = client.get(path, headers=headers).status_code

    assert (first, second, third) == (502, 502, 200)
    assert remaining["remaining"] == 1 and remaining["fired"] == {"error_502": 1}
    assert client.get("/_sandbox/faults").json() == {"faults": {}}


def test_seed_makes_the_choices_deterministic(client: TestClient) -> None:
    def run() -> list[int]:
        set_faults(client, system="stripe", error_rate=0.5, seed=42)
        return [client.get("/v1/charges/ch_1002", headers=STRIPE).status_code for _ in range(24)]

    first, second = run(), run()

    assert first == second
    assert set(first) == {200, 503}  # seed 42 gives a mix (fixed, since the seed is fixed)


def test_star_applies_to_every_system_unless_it_has_its_own(client: TestClient) -> None:
    set_faults(client, system="*", error_rate=1.0, error_status=500)
    set_faults(client, system="zendesk", latency_ms=0)

    statuses = {system: client.get(path, headers=h).status_code for system, path, h in READS}

    assert statuses == {"stripe": 500, "zendesk": 200, "salesforce": 500, "okta": 500}


def test_faults_from_the_environment_are_active_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = [
        {"system": "okta", "error_rate": 1.0, "error_status": 500},
        {"system": "zendesk", "rate_limit_rate": 1.0, "retry_after": 9, "count": 1},
    ]
    monkeypatch.setenv("OPSGATE_SANDBOX_FAULTS", json.dumps(specs))

    with TestClient(create_app(str(tmp_path / "a.db"))) as client:
        assert set(client.get("/_sandbox/faults").json()["faults"]) == {"okta", "zendesk"}
        assert client.get(READS[3][1], headers=OKTA).status_code == 500
        limited = client.get(READS[1][1], headers=ZENDESK)
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "9")
        assert client.get(READS[1][1], headers=ZENDESK).status_code == 200

    monkeypatch.setenv("OPSGATE_SANDBOX_FAULTS", json.dumps(specs[0]))  # a single spec
    with TestClient(create_app(str(tmp_path / "b.db"))) as client:
        assert list(client.get("/_sandbox/faults").json()["faults"]) == ["okta"]


@pytest.mark.parametrize("value", ["{not json", '{"system": "okta", "error_rate": 2}', "[1]"])
def test_invalid_environment_faults_fail_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OPSGATE_SANDBOX_FAULTS", value)

    with pytest.raises(ValueError, match="OPSGATE_SANDBOX_FAULTS"):
        create_app(str(tmp_path / "sandbox.db"))


# --- lost writes: acknowledged, not applied ---------------------------------------------------


def invoice(client: Any) -> dict[str, Any]:
    return dict(client.get(SF_INVOICE, headers=SALESFORCE).json())


def test_lost_salesforce_write_answers_204_and_changes_nothing(client: TestClient) -> None:
    before = invoice(client)
    set_faults(client, system="salesforce", lost_write_rate=1.0, count=1)  # the next request

    response = client.patch(
        SF_INVOICE, json={"Status__c": "On Hold", "Hold_Reason__c": "x"}, headers=SALESFORCE
    )

    # The system says it is done; a read-back says otherwise
    assert response.status_code == 204
    after = invoice(client)
    assert (after["Status__c"], after["Hold_Reason__c"]) == ("Exception", None)
    assert after["LastModifiedDate"] == before["LastModifiedDate"]
    [entry] = ledger(client)
    assert (entry["outcome"], entry["fault"], entry["status_code"]) == ("noop", "lost_write", 204)
    assert entry["body"] == {"Status__c": "On Hold", "Hold_Reason__c": "x"}
    assert ledger(client, outcome="applied") == []
    # The fault's count is spent: the same write now lands
    again = client.patch(SF_INVOICE, json={"Status__c": "On Hold"}, headers=SALESFORCE)
    assert again.status_code == 204
    assert invoice(client)["Status__c"] == "On Hold"
    assert [(w["outcome"], w["fault"]) for w in ledger(client)] == [
        ("noop", "lost_write"),
        ("applied", None),
    ]


def test_lost_okta_writes_leave_status_and_membership_as_they_were(client: TestClient) -> None:
    set_faults(client, system="okta", lost_write_rate=1.0)

    suspended = client.post(f"/api/v1/users/{ALICE}/lifecycle/suspend", headers=OKTA)
    added = client.put(f"/api/v1/groups/{ADMINS}/users/{BOB}", headers=OKTA)
    reset = client.post(f"/api/v1/users/{BOB}/lifecycle/reset_password", headers=OKTA)

    assert (suspended.status_code, added.status_code, reset.status_code) == (200, 204, 200)
    assert client.get(f"/api/v1/users/{ALICE}", headers=OKTA).json()["status"] == "ACTIVE"
    assert client.get(f"/api/v1/users/{BOB}", headers=OKTA).json()["status"] == "ACTIVE"
    assert client.get(f"/api/v1/groups/{ADMINS}/users", headers=OKTA).json() == []
    assert [(w["outcome"], w["fault"]) for w in ledger(client)] == [("noop", "lost_write")] * 3
    assert client.get("/_sandbox/faults").json()["faults"]["okta"]["fired"] == {"lost_write": 3}


def test_a_refused_write_is_not_turned_into_a_lost_one(client: TestClient) -> None:
    # carol is SUSPENDED: Okta refuses the suspension itself, and that refusal is what is sent
    set_faults(client, system="okta", lost_write_rate=1.0)
    carol = OKTA_USERS[2].id

    response = client.post(f"/api/v1/users/{carol}/lifecycle/suspend", headers=OKTA)

    assert response.status_code == 400 and response.json()["errorCode"] == "E0000001"
    [entry] = ledger(client)
    assert (entry["outcome"], entry["fault"]) == ("rejected", "lost_write")


def test_lost_stripe_refund_forgets_its_idempotency_key_too(client: TestClient) -> None:
    set_faults(client, system="stripe", lost_write_rate=1.0, count=1)

    lost = refund(client, "k-lost")

    assert lost.status_code == 200 and lost.json()["object"] == "refund"
    assert refunded(client) == 0
    listed = client.get("/v1/refunds", params={"charge": "ch_1001"}, headers=STRIPE).json()
    assert listed["data"] == []
    # Nothing happened, so the same key is fresh: applied, not replayed
    retry = refund(client, "k-lost")
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
    assert refunded(client) == 500
    assert [w["outcome"] for w in ledger(client)] == ["noop", "applied"]


def test_reads_are_never_lost_and_other_systems_are_untouched(client: TestClient) -> None:
    set_faults(client, system="salesforce", lost_write_rate=1.0)

    for _system, path, headers in READS:
        assert client.get(path, headers=headers).status_code == 200
    assert client.post(f"/api/v1/users/{ALICE}/lifecycle/suspend", headers=OKTA).status_code == 200

    assert client.get(f"/api/v1/users/{ALICE}", headers=OKTA).json()["status"] == "SUSPENDED"
    assert client.get("/_sandbox/faults").json()["faults"]["salesforce"]["fired"] == {}
    assert [(w["system"], w["outcome"]) for w in ledger(client)] == [("okta", "applied")]


def test_a_seeded_spec_without_lost_writes_draws_as_before(client: TestClient) -> None:
    # Lost writes add a draw only when asked for: older seeded runs replay the same faults.
    import random

    expected = random.Random(7)
    draws = [[expected.random() for _ in range(4)][1] < 0.5 for _ in range(12)]
    set_faults(client, system="stripe", error_rate=0.5, seed=7)

    statuses = [client.get("/v1/charges/ch_1002", headers=STRIPE).status_code for _ in range(12)]

    assert statuses == [503 if failed else 200 for failed in draws]


# --- commit then drop, in process -----------------------------------------------------------


def test_reads_are_never_dropped(client: TestClient) -> None:
    set_faults(client, system="*", commit_then_drop_rate=1.0)

    for _system, path, headers in READS:
        assert client.get(path, headers=headers).status_code == 200


def test_drop_without_a_socket_commits_and_sends_nothing(client: TestClient) -> None:
    # In process there is no connection to cut: the write happens and no response comes.
    set_faults(client, system="stripe", commit_then_drop_rate=1.0, timeout_seconds=0, count=1)

    with pytest.raises(AssertionError, match="did not receive any response"):
        refund(client, "k-drop")

    assert refunded(client) == 500
    [entry] = ledger(client)
    assert (entry["outcome"], entry["fault"]) == ("applied", "dropped_after_commit")


# --- against a real server ------------------------------------------------------------------


@pytest.fixture(scope="module", params=["drop-capable protocol", "stock uvicorn"])
def live_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The sandbox under uvicorn in a thread: tools.sandbox.server's, and a plain uvicorn one."""
    db = str(tmp_path_factory.mktemp("sandbox") / "sandbox.db")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before uvicorn starts: early connections queue
    options: dict[str, Any] = {"lifespan": "off", "log_level": "warning", "access_log": False}
    if request.param == "stock uvicorn":
        server = uvicorn.Server(uvicorn.Config(create_app(db), **options))
    else:
        server = sandbox_server.server(db, **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(500):
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            continue
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def live(live_url: str) -> Iterator[httpx.Client]:
    """A client of the live sandbox, reset and without faults."""
    with httpx.Client(base_url=live_url, timeout=30) as http:
        http.delete("/_sandbox/faults").raise_for_status()
        http.post("/_sandbox/reset").raise_for_status()
        yield http
        http.delete("/_sandbox/faults")


def test_drop_after_commit_then_retry_with_the_same_key_is_replayed(live: httpx.Client) -> None:
    set_faults(live, system="stripe", commit_then_drop_rate=1.0, count=1)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        refund(live, "job-7:s1")

    [entry] = ledger(live)
    assert (entry["outcome"], entry["fault"], entry["status_code"]) == (
        "applied",
        "dropped_after_commit",
        200,
    )
    assert refunded(live) == 500
    retry = refund(live, "job-7:s1")
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    listed = live.get("/v1/refunds", params={"charge": "ch_1001"}, headers=STRIPE).json()
    assert [r["id"] for r in listed["data"]] == [retry.json()["id"]]
    assert refunded(live) == 500
    assert [(w["outcome"], w["fault"]) for w in ledger(live)] == [
        ("applied", "dropped_after_commit"),
        ("replayed", None),
    ]


def test_stripe_python_retries_through_a_dropped_connection(live: httpx.Client) -> None:
    set_faults(live, system="stripe", commit_then_drop_rate=1.0, count=1)
    client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": str(live.base_url)}, max_network_retries=2
    )

    created = client.v1.refunds.create(
        params={"charge": "ch_1002", "amount": 1000}, options={"idempotency_key": "job-8:s1"}
    )

    assert created.amount == 1000
    assert client.v1.charges.retrieve("ch_1002").amount_refunded == 1000
    assert [(w["outcome"], w["fault"]) for w in ledger(live)] == [
        ("applied", "dropped_after_commit"),
        ("replayed", None),
    ]


def test_drop_after_commit_for_salesforce_and_okta_writes(live: httpx.Client) -> None:
    set_faults(live, system="*", commit_then_drop_rate=1.0)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        live.patch(SF_INVOICE, json={"Status__c": "On Hold"}, headers=SALESFORCE)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        live.put(f"/api/v1/groups/{ADMINS}/users/{BOB}", headers=OKTA)
    live.delete("/_sandbox/faults")

    assert live.get(SF_INVOICE, headers=SALESFORCE).json()["Status__c"] == "On Hold"
    members = live.get(f"/api/v1/groups/{ADMINS}/users", headers=OKTA).json()
    assert [m["id"] for m in members] == [BOB]
    # A retry of the add finds the member already there: no second effect.
    assert live.put(f"/api/v1/groups/{ADMINS}/users/{BOB}", headers=OKTA).status_code == 204
    assert [(w["system"], w["outcome"], w["fault"]) for w in ledger(live)] == [
        ("salesforce", "applied", "dropped_after_commit"),
        ("okta", "applied", "dropped_after_commit"),
        ("okta", "noop", None),
    ]


def test_latency_does_not_block_other_requests(live: httpx.Client) -> None:
    set_faults(live, system="stripe", latency_ms=1500, count=1)

    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        url = str(live.base_url).rstrip("/") + "/v1/charges/ch_1001"
        slow = pool.submit(httpx.get, url, headers=STRIPE, timeout=30)
        # The fault's count is consumed when the request arrives: then it is sleeping.
        for _ in range(10_000):
            if "stripe" not in live.get("/_sandbox/faults").json()["faults"]:
                break
        else:
            raise AssertionError("the slow request never reached the sandbox")
        assert live.get("/api/v2/tickets/4821.json", headers=ZENDESK).status_code == 200
        assert not slow.done()  # served while the slow request is still waiting
        response = slow.result()
        elapsed = time.monotonic() - started

    assert response.status_code == 200 and elapsed >= 1.5
