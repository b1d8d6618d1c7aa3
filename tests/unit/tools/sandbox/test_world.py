"""The sandbox's world-seeding endpoints: rows they insert are served in the wire format of
each system, and none of them is a write in the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tools.sandbox.app import create_app
from tools.sandbox.salesforce.model import id18

OKTA = {"Authorization": "SSWS 00abcdefTestApiToken"}
SF = {"Authorization": "Bearer 00Dtest!token"}
ZD = {"Authorization": "Basic YWdlbnRAb3BzZ2F0ZS5leGFtcGxlL3Rva2VuOnNlY3JldA=="}
GROUP = "00gcorworld000000000"
USER = "00ucorworld000000001"
PO = id18("a02Dn0000World1")
INVOICE = id18("a01Dn0000World1")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(str(tmp_path / "sandbox.db"))) as test_client:
        yield test_client


def test_okta_users_in_any_status_with_groups(client: TestClient) -> None:
    # Given a group and a locked-out user in it
    assert client.post("/_sandbox/okta/groups", json=[{"id": GROUP, "name": "Lab"}]).is_success
    resp = client.post(
        "/_sandbox/okta/users",
        json=[
            {
                "id": USER,
                "login": "lou@corp.example",
                "first_name": "Lou",
                "last_name": "Locke",
                "status": "LOCKED_OUT",
                "groups": [GROUP],
            }
        ],
    )
    assert resp.status_code == 200, resp.text
    # Then Okta serves the user by login, in its status, and its membership
    user = client.get("/api/v1/users/lou@corp.example", headers=OKTA).json()
    assert (user["id"], user["status"]) == (USER, "LOCKED_OUT")
    groups = client.get(f"/api/v1/users/{USER}/groups", headers=OKTA).json()
    assert [g["id"] for g in groups] == [GROUP]
    # And nothing was written to the ledger
    assert client.get("/_sandbox/ledger").json()["writes"] == []


def test_okta_user_in_an_unknown_group_or_status_is_refused(client: TestClient) -> None:
    base = {"id": USER, "login": "x@corp.example", "first_name": "X", "last_name": "Y"}
    for bad in ({**base, "groups": [GROUP]}, {**base, "status": "GONE"}):
        assert client.post("/_sandbox/okta/users", json=[bad]).status_code == 422


def test_salesforce_records_are_served_and_queryable(client: TestClient) -> None:
    records = [
        {
            "sobject": "Purchase_Order__c",
            "id": PO,
            "fields": {
                "Name": "PO-W1",
                "Vendor__c": "Acme Supplies",
                "Amount__c": 1000,
                "CurrencyIsoCode": "USD",
                "Status__c": "Open",
            },
        },
        {
            "sobject": "Invoice__c",
            "id": INVOICE,
            "fields": {
                "Name": "INV-W1",
                "Vendor__c": "Acme Supplies",
                "Amount__c": "1000.40",
                "CurrencyIsoCode": "USD",
                "Purchase_Order__c": PO,
                "Due_Date__c": "2030-01-31",
                "Status__c": "Exception",
            },
        },
    ]
    resp = client.post("/_sandbox/salesforce/records", json=records)
    assert resp.status_code == 200, resp.text
    invoice = client.get(f"/services/data/v61.0/sobjects/Invoice__c/{INVOICE}", headers=SF).json()
    assert (invoice["Amount__c"], invoice["Purchase_Order__c"]) == (1000.4, PO)
    assert invoice["Hold_Reason__c"] is None
    found = client.get(
        "/services/data/v61.0/query",
        params={"q": "SELECT Id FROM Invoice__c WHERE Name = 'INV-W1'"},
        headers=SF,
    ).json()
    assert [r["Id"] for r in found["records"]] == [INVOICE]
    assert client.get("/_sandbox/ledger").json()["writes"] == []


def test_salesforce_record_with_a_bad_field_names_record_and_field(client: TestClient) -> None:
    bad = {"sobject": "Invoice__c", "id": INVOICE, "fields": {"Name": "X", "Status__c": "Nope"}}
    resp = client.post("/_sandbox/salesforce/records", json=[bad])
    assert resp.status_code == 422
    assert INVOICE in resp.text and "Status" in resp.text


def test_zendesk_users_are_served(client: TestClient) -> None:
    user = {"id": 91999, "name": "Dana Cole", "email": "dana@example.net"}
    assert client.post("/_sandbox/zendesk/users", json=[user]).is_success
    got = client.get("/api/v2/users/91999.json", headers=ZD).json()["user"]
    assert (got["name"], got["email"]) == ("Dana Cole", "dana@example.net")
