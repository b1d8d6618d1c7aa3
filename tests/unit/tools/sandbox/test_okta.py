"""The sandbox's Okta emulation: users, lifecycle operations, groups, seed data."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tools.sandbox.app import create_app
from tools.sandbox.seed import OKTA_GROUPS, OKTA_USERS

AUTH = {"Authorization": "SSWS 00abcdefTestApiToken"}
USERS = {u.login.split("@")[0]: u.id for u in OKTA_USERS}
GROUPS = {g.name: g.id for g in OKTA_GROUPS}
ALICE, BOB, CAROL, DAVE, ERIN = (USERS[n] for n in ("alice", "bob", "carol", "dave", "erin"))
ADMINS, VPN = GROUPS["Okta Admins"], GROUPS["VPN Users"]
OKTA_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z")
ClientResponse = Any


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """A sandbox over a fresh SQLite file."""
    with TestClient(create_app(str(tmp_path / "sandbox.db"))) as test_client:
        yield test_client


def user(client: TestClient, key: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/users/{key}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def lifecycle(client: TestClient, user_id: str, op: str, **params: str) -> ClientResponse:
    return client.post(f"/api/v1/users/{user_id}/lifecycle/{op}", params=params, headers=AUTH)


def add(client: TestClient, group_id: str, user_id: str) -> ClientResponse:
    return client.put(f"/api/v1/groups/{group_id}/users/{user_id}", headers=AUTH)


def ledger(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    return client.get("/_sandbox/ledger", params=filters).json()["writes"]


def okta_error(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """The Okta error object, after checking the status, code and the object's shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
    assert (body["errorCode"], body["errorLink"]) == (code, code)
    assert body["errorId"].startswith("oae") and isinstance(body["errorCauses"], list)
    return body


# --- users ----------------------------------------------------------------------------------


def test_user_has_okta_user_shape(client: TestClient) -> None:
    body = user(client, ALICE)

    assert body["id"] == ALICE and body["status"] == "ACTIVE"
    for name in ("created", "activated", "statusChanged", "lastLogin", "lastUpdated"):
        assert OKTA_TIME.fullmatch(body[name]), name
    assert OKTA_TIME.fullmatch(body["passwordChanged"])
    assert body["type"]["id"].startswith("oty") and len(body["type"]["id"]) == 20
    assert body["profile"] == {
        "firstName": "Alice",
        "lastName": "Adams",
        "mobilePhone": None,
        "secondEmail": None,
        "login": "alice@example.com",
        "email": "alice@example.com",
    }
    assert body["credentials"] == {"provider": {"type": "OKTA", "name": "OKTA"}}
    links = body["_links"]
    assert links["self"]["href"].endswith(f"/api/v1/users/{ALICE}")
    assert links["suspend"] == {
        "href": links["self"]["href"] + "/lifecycle/suspend",
        "method": "POST",
    }
    assert "resetPassword" in links


@pytest.mark.parametrize("key", [ALICE, "alice@example.com", "ALICE@Example.com", "alice"])
def test_user_by_id_login_or_shortname(client: TestClient, key: str) -> None:
    assert user(client, key)["id"] == ALICE


def test_unknown_user_is_e0000007(client: TestClient) -> None:
    response = client.get("/api/v1/users/nobody@example.com", headers=AUTH)

    body = okta_error(response, 404, "E0000007")
    assert body["errorSummary"] == "Not found: Resource not found: nobody@example.com (User)"
    assert body["errorCauses"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer eyJhbGciOi"},
        {"Authorization": "SSWS "},
        {"Authorization": "ssws x"},
    ],
)
def test_api_token_is_required(client: TestClient, headers: dict[str, str]) -> None:
    responses = [
        client.get(f"/api/v1/users/{ALICE}", headers=headers),
        client.get(f"/api/v1/groups/{ADMINS}", headers=headers),
        client.post(f"/api/v1/users/{ALICE}/lifecycle/suspend", headers=headers),
        client.put(f"/api/v1/groups/{ADMINS}/users/{ALICE}", headers=headers),
    ]

    for response in responses:
        body = okta_error(response, 401, "E0000011")
        assert body["errorSummary"] == "Invalid token provided" and body["errorCauses"] == []
    assert user(client, ALICE)["status"] == "ACTIVE"
    assert [(w["outcome"], w["status_code"]) for w in ledger(client)] == [("rejected", 401)] * 2


# --- lifecycle ------------------------------------------------------------------------------


def test_reset_password_with_email_moves_user_to_recovery(client: TestClient) -> None:
    response = lifecycle(client, ALICE, "reset_password", sendEmail="true")

    assert response.status_code == 200 and response.json() == {}
    after = user(client, ALICE)
    assert after["status"] == "RECOVERY" and "suspend" not in after["_links"]
    [write] = ledger(client)
    assert (write["system"], write["method"], write["outcome"]) == ("okta", "POST", "applied")
    assert write["path"] == f"/api/v1/users/{ALICE}/lifecycle/reset_password"
    assert write["body"] == {"sendEmail": "true"} and write["status_code"] == 200


def test_reset_password_without_email_returns_the_url(client: TestClient) -> None:
    response = lifecycle(client, BOB, "reset_password", sendEmail="false")

    assert response.status_code == 200
    url = response.json()["resetPasswordUrl"]
    assert re.fullmatch(r"https?://[^/]+/reset_password/[A-Za-z0-9]{20}", url)
    assert user(client, BOB)["status"] == "RECOVERY"
    # Resetting again while in RECOVERY is allowed (a new link; still a write).
    assert lifecycle(client, BOB, "reset_password", sendEmail="false").status_code == 200
    assert [w["outcome"] for w in ledger(client)] == ["applied", "applied"]


def test_reset_password_of_suspended_user_is_e0000038(client: TestClient) -> None:
    response = lifecycle(client, CAROL, "reset_password", sendEmail="true")

    body = okta_error(response, 403, "E0000038")
    assert body["errorSummary"] == "This operation is not allowed in the user's current status."
    assert user(client, CAROL)["status"] == "SUSPENDED"
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]


def test_suspend_active_user_then_again_is_e0000001(client: TestClient) -> None:
    first = lifecycle(client, DAVE, "suspend")
    second = lifecycle(client, DAVE, "suspend")

    assert first.status_code == 200 and first.json() == {}
    after = user(client, DAVE)
    assert after["status"] == "SUSPENDED" and "unsuspend" in after["_links"]
    assert after["statusChanged"] == after["lastUpdated"]
    body = okta_error(second, 400, "E0000001")
    assert body["errorSummary"] == "Api validation failed: Cannot suspend a user that is not active"
    assert body["errorCauses"] == [{"errorSummary": "Cannot suspend a user that is not active"}]
    assert [w["outcome"] for w in ledger(client)] == ["applied", "rejected"]


def test_suspend_of_recovery_user_is_refused(client: TestClient) -> None:
    assert lifecycle(client, ERIN, "reset_password").status_code == 200

    okta_error(lifecycle(client, ERIN, "suspend"), 400, "E0000001")
    assert user(client, ERIN)["status"] == "RECOVERY"


def test_lifecycle_of_unknown_user_is_not_found(client: TestClient) -> None:
    for op in ("suspend", "reset_password"):
        body = okta_error(lifecycle(client, "00uNoSuchUser0000000", op), 404, "E0000007")
        assert body["errorSummary"] == "Not found: Resource not found: 00uNoSuchUser0000000 (User)"
    assert [w["outcome"] for w in ledger(client)] == ["rejected", "rejected"]


# --- groups ---------------------------------------------------------------------------------


def test_group_has_okta_group_shape(client: TestClient) -> None:
    response = client.get(f"/api/v1/groups/{ADMINS}", headers=AUTH)

    body = response.json()
    assert (body["id"], body["type"]) == (ADMINS, "OKTA_GROUP")
    assert body["profile"]["name"] == "Okta Admins" and body["profile"]["description"]
    assert body["objectClass"] == ["okta:user_group"]
    for name in ("created", "lastUpdated", "lastMembershipUpdated"):
        assert OKTA_TIME.fullmatch(body[name])
    assert body["_links"]["users"]["href"].endswith(f"/api/v1/groups/{ADMINS}/users")


def test_unknown_group_is_e0000007(client: TestClient) -> None:
    body = okta_error(client.get("/api/v1/groups/00gNope", headers=AUTH), 404, "E0000007")

    assert body["errorSummary"] == "Not found: Resource not found: 00gNope (UserGroup)"
    okta_error(client.get("/api/v1/groups/00gNope/users", headers=AUTH), 404, "E0000007")
    okta_error(client.get("/api/v1/users/nobody/groups", headers=AUTH), 404, "E0000007")


def test_add_member_then_repeat_is_noop(client: TestClient) -> None:
    before = client.get(f"/api/v1/groups/{ADMINS}", headers=AUTH).json()
    first = add(client, ADMINS, BOB)
    second = add(client, ADMINS, BOB)

    assert first.status_code == second.status_code == 204
    assert first.content == second.content == b""
    members = client.get(f"/api/v1/groups/{ADMINS}/users", headers=AUTH).json()
    assert [m["id"] for m in members] == [BOB]
    assert members[0]["profile"]["login"] == "bob@example.com"
    groups = client.get(f"/api/v1/users/{BOB}/groups", headers=AUTH).json()
    assert {g["profile"]["name"] for g in groups} == {"Finance", "Okta Admins"}
    after = client.get(f"/api/v1/groups/{ADMINS}", headers=AUTH).json()
    assert after["lastMembershipUpdated"] >= before["lastMembershipUpdated"]
    writes = ledger(client, system="okta")
    assert [(w["method"], w["outcome"], w["status_code"]) for w in writes] == [
        ("PUT", "applied", 204),
        ("PUT", "noop", 204),
    ]
    assert [w["path"] for w in ledger(client, outcome="noop")] == [
        f"/api/v1/groups/{ADMINS}/users/{BOB}"
    ]


def test_adding_an_existing_seeded_member_is_noop(client: TestClient) -> None:
    assert add(client, VPN, ALICE).status_code == 204

    assert [w["outcome"] for w in ledger(client)] == ["noop"]


def test_add_member_unknown_group_or_user(client: TestClient) -> None:
    group = okta_error(add(client, "00gNoSuchGroup000000", ALICE), 404, "E0000007")
    member = okta_error(add(client, ADMINS, "00uNoSuchUser0000000"), 404, "E0000007")

    assert group["errorSummary"].endswith("00gNoSuchGroup000000 (UserGroup)")
    assert member["errorSummary"].endswith("00uNoSuchUser0000000 (User)")
    assert client.get(f"/api/v1/groups/{ADMINS}/users", headers=AUTH).json() == []
    assert [w["outcome"] for w in ledger(client)] == ["rejected", "rejected"]


def test_unknown_okta_route_answers_in_okta_shape(client: TestClient) -> None:
    okta_error(client.get("/api/v1/nothing/here", headers=AUTH), 404, "E0000007")
    okta_error(
        client.delete(f"/api/v1/users/{ALICE}/lifecycle/suspend", headers=AUTH), 405, "E0000022"
    )


# --- seed data ------------------------------------------------------------------------------


def test_seed_users(client: TestClient) -> None:
    expected = {
        "alice": ("alice@example.com", "Alice", "Adams", "ACTIVE"),
        "bob": ("bob@example.com", "Bob", "Brown", "ACTIVE"),
        "carol": ("carol@example.com", "Carol", "Chen", "SUSPENDED"),
        "dave": ("dave@corp.example", "Dave", "Diaz", "ACTIVE"),
        "erin": ("erin@corp.example", "Erin", "Evans", "ACTIVE"),
    }
    assert set(USERS) == set(expected)
    for n, (short, (login, first, last, status)) in enumerate(expected.items(), start=1):
        user_id = USERS[short]
        assert len(user_id) == 20 and user_id.startswith(f"00u{n}{short}")
        body = user(client, login)
        assert body["id"] == user_id and body["status"] == status
        profile = body["profile"]
        assert (profile["login"], profile["email"]) == (login, login)
        assert (profile["firstName"], profile["lastName"]) == (first, last)


def test_seed_groups_and_memberships(client: TestClient) -> None:
    assert list(GROUPS) == ["Engineering", "Finance", "Okta Admins", "VPN Users"]
    for n, group_id in enumerate(GROUPS.values(), start=1):
        assert len(group_id) == 20 and group_id.startswith(f"00g{n}")
    expected = {
        "Engineering": {ALICE, DAVE},
        "Finance": {BOB},
        "Okta Admins": set(),
        "VPN Users": {ALICE},
    }
    for name, members in expected.items():
        listed = client.get(f"/api/v1/groups/{GROUPS[name]}/users", headers=AUTH).json()
        assert {m["id"] for m in listed} == members
    alice_groups = client.get("/api/v1/users/alice@example.com/groups", headers=AUTH).json()
    assert {g["profile"]["name"] for g in alice_groups} == {"Engineering", "VPN Users"}


def test_ids_are_stable_across_resets(client: TestClient) -> None:
    assert lifecycle(client, ALICE, "suspend").status_code == 200
    assert add(client, ADMINS, ALICE).status_code == 204

    client.post("/_sandbox/reset")

    assert user(client, "alice@example.com")["id"] == ALICE
    assert user(client, ALICE)["status"] == "ACTIVE"
    assert client.get(f"/api/v1/groups/{ADMINS}/users", headers=AUTH).json() == []
    assert ledger(client) == []


# --- store upgrades -------------------------------------------------------------------------


def test_older_sandbox_file_is_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    create_app(str(db))
    with sqlite3.connect(db) as conn:  # as an older sandbox left it: no new data, old ledger
        conn.execute("DELETE FROM okta_members")
        conn.execute("DELETE FROM okta_users")
        conn.execute("DELETE FROM okta_groups")
        conn.execute("DELETE FROM sf_records")
        conn.execute("DROP TABLE ledger")
        conn.execute(
            "CREATE TABLE ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, system TEXT NOT NULL,"
            " method TEXT NOT NULL, path TEXT NOT NULL, idempotency_key TEXT, body TEXT,"
            " status_code INTEGER NOT NULL, outcome TEXT NOT NULL CHECK (outcome IN"
            " ('applied', 'replayed', 'rejected')), at TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO ledger (system, method, path, body, status_code, outcome, at)"
            " VALUES ('stripe', 'POST', '/v1/refunds', '{}', 200, 'applied', '2026-01-01')"
        )

    with TestClient(create_app(str(db))) as client:
        assert add(client, VPN, ALICE).status_code == 204
        writes = ledger(client)

    assert [(w["seq"], w["outcome"], w["fault"]) for w in writes] == [
        (1, "applied", None),
        (2, "noop", None),
    ]
