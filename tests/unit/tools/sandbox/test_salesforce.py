"""The sandbox's Salesforce REST emulation: records, PATCH validation, SOQL subset, seed data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tools.sandbox.app import create_app
from tools.sandbox.salesforce.model import id18
from tools.sandbox.seed import INVOICE_IDS, PURCHASE_ORDER_IDS

AUTH = {"Authorization": "Bearer 00Dxx0000001gPL!AQ4AQFakeSessionToken"}
BASE = "/services/data/v60.0"
INV_1001 = INVOICE_IDS["INV-1001"]
INV_1007 = INVOICE_IDS["INV-1007"]  # Paid
PO_5002 = PURCHASE_ORDER_IDS["PO-5002"]
SF_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000")
ClientResponse = Any


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """A sandbox over a fresh SQLite file."""
    with TestClient(create_app(str(tmp_path / "sandbox.db"))) as test_client:
        yield test_client


def get(client: TestClient, sobject: str, record_id: str, **kw: Any) -> ClientResponse:
    return client.get(f"{BASE}/sobjects/{sobject}/{record_id}", headers=AUTH, **kw)


def invoice(client: TestClient, record_id: str = INV_1001) -> dict[str, Any]:
    response = get(client, "Invoice__c", record_id)
    assert response.status_code == 200, response.text
    return response.json()


def patch(client: TestClient, fields: Any, record_id: str = INV_1001) -> ClientResponse:
    return client.patch(f"{BASE}/sobjects/Invoice__c/{record_id}", json=fields, headers=AUTH)


def soql(client: TestClient, q: str, path: str = "/query") -> ClientResponse:
    return client.get(f"{BASE}{path}", params={"q": q}, headers=AUTH)


def ledger(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    return client.get("/_sandbox/ledger", params=filters).json()["writes"]


def one_error(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """The single error of a Salesforce error array, after checking status and code."""
    assert response.status_code == status, response.text
    [error] = response.json()
    assert error["errorCode"] == code
    return error


# --- records --------------------------------------------------------------------------------


def test_invoice_has_salesforce_record_shape(client: TestClient) -> None:
    body = invoice(client)

    assert list(body)[:2] == ["attributes", "Id"]
    assert body["attributes"] == {
        "type": "Invoice__c",
        "url": f"/services/data/v60.0/sobjects/Invoice__c/{INV_1001}",
    }
    assert body["Id"] == INV_1001 and len(body["Id"]) == 18
    assert (body["Name"], body["Vendor__c"], body["Amount__c"]) == (
        "INV-1001",
        "Acme Supplies",
        1200.0,
    )
    assert (body["CurrencyIsoCode"], body["Status__c"]) == ("USD", "Exception")
    assert body["Purchase_Order__c"] == PURCHASE_ORDER_IDS["PO-5001"]
    assert body["Exception_Reason__c"] == "needs review" and body["Hold_Reason__c"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", body["Due_Date__c"])
    assert body["IsDeleted"] is False
    for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert SF_DATETIME.fullmatch(body[name]), body[name]


def test_any_api_version_and_15_char_ids_are_accepted(client: TestClient) -> None:
    response = client.get(f"/services/data/v58.0/sobjects/Invoice__c/{INV_1001[:15]}", headers=AUTH)

    assert response.status_code == 200
    body = response.json()
    assert body["Id"] == INV_1001
    assert body["attributes"]["url"] == f"/services/data/v58.0/sobjects/Invoice__c/{INV_1001}"
    # 18-character ids are case-insensitive (the suffix restores the case).
    assert get(client, "Invoice__c", INV_1001.lower()).json()["Id"] == INV_1001
    query = f"SELECT Name FROM Invoice__c WHERE Id = '{INV_1001[:15]}'"
    assert [r["Name"] for r in soql(client, query).json()["records"]] == ["INV-1001"]


def test_fields_parameter_limits_the_fields(client: TestClient) -> None:
    response = get(client, "Invoice__c", INV_1001, params={"fields": "Name,Status__c"})

    assert response.json() == {
        "attributes": {
            "type": "Invoice__c",
            "url": f"/services/data/v60.0/sobjects/Invoice__c/{INV_1001}",
        },
        "Id": INV_1001,
        "Name": "INV-1001",
        "Status__c": "Exception",
    }
    bad = get(client, "Invoice__c", INV_1001, params={"fields": "Nope__c"})
    assert one_error(bad, 400, "INVALID_FIELD")["message"] == (
        "No such column 'Nope__c' on sobject of type Invoice__c"
    )


def test_purchase_order_record(client: TestClient) -> None:
    response = get(client, "Purchase_Order__c", PURCHASE_ORDER_IDS["PO-5002"])

    body = response.json()
    assert body["attributes"]["type"] == "Purchase_Order__c"
    assert (body["Name"], body["Vendor__c"], body["Amount__c"]) == (
        "PO-5002",
        "Globex Parts",
        800.0,
    )
    assert (body["CurrencyIsoCode"], body["Status__c"]) == ("USD", "Open")
    assert "Due_Date__c" not in body


@pytest.mark.parametrize(
    "path",
    [
        f"/sobjects/Invoice__c/{INV_1001[:-3]}xyz",  # valid form, no such record
        "/sobjects/Invoice__c/a01Dn00000NoSuchIAA",
        "/sobjects/Invoice__c/not-an-id",
        f"/sobjects/Purchase_Order__c/{INV_1001}",  # an invoice id under the PO type
        f"/sobjects/Account__x/{INV_1001}",
        "/no/such/resource",
    ],
)
def test_unknown_resources_are_not_found(client: TestClient, path: str) -> None:
    response = client.get(f"{BASE}{path}", headers=AUTH)

    assert response.status_code == 404
    assert response.json() == [
        {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
    ]


def test_unsupported_method_is_method_not_allowed(client: TestClient) -> None:
    response = client.delete(f"{BASE}/sobjects/Invoice__c/{INV_1001}", headers=AUTH)

    error = one_error(response, 405, "METHOD_NOT_ALLOWED")
    assert error["message"].startswith("HTTP Method 'DELETE' not allowed. Allowed are ")
    assert "PATCH" in error["message"]
    assert invoice(client)["Id"] == INV_1001


def test_malformed_api_version_is_not_found(client: TestClient) -> None:
    response = client.get(f"/services/data/60/sobjects/Invoice__c/{INV_1001}", headers=AUTH)

    assert response.status_code == 404 and response.json()[0]["errorCode"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic x"}]
)
def test_session_is_required(client: TestClient, headers: dict[str, str]) -> None:
    read = client.get(f"{BASE}/sobjects/Invoice__c/{INV_1001}", headers=headers)
    query = client.get(f"{BASE}/query", params={"q": "SELECT Id FROM Invoice__c"}, headers=headers)
    write = client.patch(
        f"{BASE}/sobjects/Invoice__c/{INV_1001}", json={"Status__c": "Approved"}, headers=headers
    )

    for response in (read, query, write):
        assert response.status_code == 401
        assert response.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
    assert invoice(client)["Status__c"] == "Exception"
    assert [(w["outcome"], w["status_code"]) for w in ledger(client)] == [("rejected", 401)]


# --- PATCH ----------------------------------------------------------------------------------


def test_patch_applies_fields_and_answers_204(client: TestClient) -> None:
    before = invoice(client)
    response = patch(client, {"Status__c": "On Hold", "Hold_Reason__c": "waiting for vendor"})

    assert response.status_code == 204 and response.content == b""
    after = invoice(client)
    assert (after["Status__c"], after["Hold_Reason__c"]) == ("On Hold", "waiting for vendor")
    assert after["LastModifiedDate"] >= before["LastModifiedDate"]
    assert after["CreatedDate"] == before["CreatedDate"]
    [write] = ledger(client)
    assert (write["system"], write["method"], write["outcome"]) == (
        "salesforce",
        "PATCH",
        "applied",
    )
    assert write["path"] == f"{BASE}/sobjects/Invoice__c/{INV_1001}"
    assert write["body"] == {"Status__c": "On Hold", "Hold_Reason__c": "waiting for vendor"}
    assert write["status_code"] == 204 and write["idempotency_key"] is None


def test_repeated_patch_is_applied_each_time(client: TestClient) -> None:
    # No idempotency keys in Salesforce: every accepted PATCH is a write, even a no-change one.
    for _ in range(2):
        assert patch(client, {"Status__c": "Approved"}).status_code == 204

    assert invoice(client)["Status__c"] == "Approved"
    assert [w["outcome"] for w in ledger(client, system="salesforce")] == ["applied", "applied"]


def test_field_names_are_case_insensitive_and_attributes_ignored(client: TestClient) -> None:
    body = {"attributes": {"type": "Invoice__c"}, "status__c": "Rejected", "amount__C": "99.5"}

    assert patch(client, body).status_code == 204
    after = invoice(client)
    assert (after["Status__c"], after["Amount__c"]) == ("Rejected", 99.5)


def test_unknown_field_is_invalid_field(client: TestClient) -> None:
    response = patch(client, {"Status__c": "Approved", "Bogus__c": 1})

    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "No such column 'Bogus__c' on sobject of type Invoice__c",
            "errorCode": "INVALID_FIELD",
            "fields": [],
        }
    ]
    assert invoice(client)["Status__c"] == "Exception"
    assert [(w["outcome"], w["status_code"]) for w in ledger(client)] == [("rejected", 400)]


def test_invalid_picklist_value_is_restricted_picklist_error(client: TestClient) -> None:
    response = patch(client, {"Status__c": "Approvd"})

    error = one_error(response, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    assert error["fields"] == ["Status__c"]
    assert "Approvd" in error["message"]
    assert invoice(client)["Status__c"] == "Exception"


def test_approving_a_paid_invoice_is_refused_by_validation_rule(client: TestClient) -> None:
    response = patch(client, {"Status__c": "Approved"}, INV_1007)

    error = one_error(response, 400, "FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert error["fields"] == [] and error["message"]
    assert invoice(client, INV_1007)["Status__c"] == "Paid"
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]


@pytest.mark.parametrize(
    ("fields", "code", "error_fields"),
    [
        ({"Id": INV_1001}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["Id"]),
        (
            {"LastModifiedDate": "2024-01-01T00:00:00.000+0000"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            None,
        ),
        ({"Amount__c": "lots"}, "JSON_PARSER_ERROR", None),
        ({"Amount__c": {"value": 1}}, "JSON_PARSER_ERROR", None),
        ({"Due_Date__c": "next week"}, "JSON_PARSER_ERROR", None),
        ({"Name": None}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ({"Status__c": None}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status__c"]),
        ({"CurrencyIsoCode": "XXX"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", None),
        ({"Purchase_Order__c": "PO-5001"}, "MALFORMED_ID", ["Purchase_Order__c"]),
        ({"Purchase_Order__c": INV_1007}, "FIELD_INTEGRITY_EXCEPTION", ["Purchase_Order__c"]),
        ({"Exception_Reason__c": "x" * 256}, "STRING_TOO_LONG", ["Exception_Reason__c"]),
    ],
)
def test_field_values_are_validated(
    client: TestClient, fields: dict[str, Any], code: str, error_fields: list[str] | None
) -> None:
    before = invoice(client)
    error = one_error(patch(client, fields), 400, code)

    if error_fields is not None:
        assert error["fields"] == error_fields
    assert invoice(client) == before


def test_reference_and_date_fields_are_stored(client: TestClient) -> None:
    po = PURCHASE_ORDER_IDS["PO-5003"]
    invoice_id = INVOICE_IDS["INV-1003"]

    response = patch(
        client, {"Purchase_Order__c": po[:15], "Due_Date__c": "2030-01-31"}, invoice_id
    )

    assert response.status_code == 204
    after = invoice(client, invoice_id)
    assert (after["Purchase_Order__c"], after["Due_Date__c"]) == (po, "2030-01-31")
    assert patch(client, {"Purchase_Order__c": None}, invoice_id).status_code == 204
    assert invoice(client, invoice_id)["Purchase_Order__c"] is None


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]"])
def test_malformed_body_is_json_parser_error(client: TestClient, raw: bytes) -> None:
    response = client.patch(
        f"{BASE}/sobjects/Invoice__c/{INV_1001}",
        content=raw,
        headers={**AUTH, "Content-Type": "application/json"},
    )

    one_error(response, 400, "JSON_PARSER_ERROR")
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]


def test_patch_of_unknown_record_is_not_found(client: TestClient) -> None:
    response = patch(client, {"Status__c": "Approved"}, "a01Dn00000NoSuchIAA")

    one_error(response, 404, "NOT_FOUND")
    assert [w["outcome"] for w in ledger(client)] == ["rejected"]


# --- SOQL -----------------------------------------------------------------------------------


def test_query_returns_selected_fields_with_attributes(client: TestClient) -> None:
    response = soql(client, "SELECT Id, Name, Amount__c FROM Invoice__c WHERE Name = 'INV-1002'")

    assert response.status_code == 200
    assert response.json() == {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {
                    "type": "Invoice__c",
                    "url": f"/services/data/v60.0/sobjects/Invoice__c/{INVOICE_IDS['INV-1002']}",
                },
                "Id": INVOICE_IDS["INV-1002"],
                "Name": "INV-1002",
                "Amount__c": 880.0,
            }
        ],
    }


def test_invoice_lookup_by_number_finds_the_duplicate(client: TestClient) -> None:
    body = soql(client, "select Id, Status__c from invoice__c where name = 'inv-1001'").json()

    assert body["totalSize"] == 2
    assert {r["Id"] for r in body["records"]} == {INVOICE_IDS["INV-1001"], INVOICE_IDS["INV-1004"]}
    assert all(list(r) == ["attributes", "Id", "Status__c"] for r in body["records"])


@pytest.mark.parametrize(
    ("q", "names"),
    [
        ("SELECT Name FROM Invoice__c", [f"INV-100{n}" for n in (1, 2, 3, 1, 5, 6, 7)]),
        ("SELECT Name FROM Invoice__c WHERE Status__c = 'Paid'", ["INV-1007"]),
        (
            "SELECT Name FROM Invoice__c WHERE Vendor__c = 'Acme Supplies' AND Amount__c = 300",
            ["INV-1006"],
        ),
        ("SELECT Name FROM Invoice__c WHERE Purchase_Order__c = null", ["INV-1003", "INV-1005"]),
        (
            f"SELECT Name FROM Invoice__c WHERE Purchase_Order__c = '{PO_5002}'",
            ["INV-1002", "INV-1007"],
        ),
        ("SELECT Name FROM Invoice__c WHERE Status__c != 'Exception'", ["INV-1007"]),
        (
            r"SELECT Name FROM Invoice__c WHERE Exception_Reason__c = 'duplicate invoice number?'",
            ["INV-1001"],
        ),
        (
            "SELECT Name FROM Invoice__c WHERE Status__c = 'Exception' LIMIT 2",
            ["INV-1001", "INV-1002"],
        ),
        ("SELECT Name FROM Invoice__c WHERE Name = 'O\\'Brien'", []),
        ("SELECT Name FROM Purchase_Order__c WHERE Status__c = 'Closed'", ["PO-5004"]),
    ],
)
def test_query_subset(client: TestClient, q: str, names: list[str]) -> None:
    response = soql(client, q)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["done"] is True and body["totalSize"] == len(body["records"])
    assert sorted(r["Name"] for r in body["records"]) == sorted(names)


def test_query_dates_are_unquoted_literals(client: TestClient) -> None:
    due = invoice(client, INVOICE_IDS["INV-1006"])["Due_Date__c"]

    body = soql(client, f"SELECT Name FROM Invoice__c WHERE Due_Date__c = {due}").json()

    assert [r["Name"] for r in body["records"]] == ["INV-1006"]


def test_query_trailing_slash_form(client: TestClient) -> None:
    # simple-salesforce requests .../query/?q=...
    response = soql(client, "SELECT Id FROM Purchase_Order__c", path="/query/")

    assert response.status_code == 200 and response.json()["totalSize"] == 4


@pytest.mark.parametrize(
    "q",
    [
        "",
        "SELECT",
        "SELECT Name",
        "SELECT Name FROM",
        "SELECT Name, FROM Invoice__c",
        "SELECT * FROM Invoice__c",
        "SELECT Name FROM Invoice__c WHERE",
        "SELECT Name FROM Invoice__c WHERE Name",
        "SELECT Name FROM Invoice__c WHERE Name = ",
        "SELECT Name FROM Invoice__c WHERE Name = 'x' OR Name = 'y'",
        "SELECT Name FROM Invoice__c WHERE Name LIKE 'INV%'",
        "SELECT Name FROM Invoice__c LIMIT x",
        "DELETE FROM Invoice__c",
    ],
)
def test_malformed_queries(client: TestClient, q: str) -> None:
    error = one_error(soql(client, q), 400, "MALFORMED_QUERY")

    assert error["message"].startswith("unexpected token")


def test_query_unknown_field_and_object(client: TestClient) -> None:
    field = one_error(soql(client, "SELECT Nope__c FROM Invoice__c"), 400, "INVALID_FIELD")
    where = one_error(
        soql(client, "SELECT Name FROM Invoice__c WHERE Nope__c = 'x'"), 400, "INVALID_FIELD"
    )
    sobject = one_error(soql(client, "SELECT Name FROM Bill__c"), 400, "INVALID_TYPE")

    assert "No such column 'Nope__c' on entity 'Invoice__c'" in field["message"]
    assert "No such column 'Nope__c'" in where["message"]
    assert "sObject type 'Bill__c' is not supported" in sobject["message"]


def test_query_literal_types_are_checked(client: TestClient) -> None:
    quoted_number = soql(client, "SELECT Name FROM Invoice__c WHERE Amount__c = '300'")
    bare_string = soql(client, "SELECT Name FROM Invoice__c WHERE Name = 12")

    assert "must be of type double" in one_error(quoted_number, 400, "INVALID_FIELD")["message"]
    assert "must be of type string" in one_error(bare_string, 400, "INVALID_FIELD")["message"]


def test_query_sees_patched_values(client: TestClient) -> None:
    assert patch(client, {"Status__c": "Approved"}).status_code == 204

    body = soql(client, "SELECT Id FROM Invoice__c WHERE Status__c = 'Approved'").json()

    assert [r["Id"] for r in body["records"]] == [INV_1001]


# --- seed data ------------------------------------------------------------------------------


def test_seed_ids_are_valid_18_char_ids() -> None:
    for prefix, ids in (("a01", INVOICE_IDS), ("a02", PURCHASE_ORDER_IDS)):
        for record_id in ids.values():
            assert len(record_id) == 18 and record_id.startswith(prefix)
            assert id18(record_id[:15]) == record_id
    assert len(set(INVOICE_IDS.values())) == len(INVOICE_IDS)
    # The checksum algorithm itself, on a known id pair.
    assert id18("001D000000IRFma") == "001D000000IRFmaIAH"


def test_seed_purchase_orders(client: TestClient) -> None:
    expected = {
        "PO-5001": ("Acme Supplies", 1200.0, "Open"),
        "PO-5002": ("Globex Parts", 800.0, "Open"),
        "PO-5003": ("Initech Services", 5000.0, "Open"),
        "PO-5004": ("Acme Supplies", 300.0, "Closed"),
    }
    for name, (vendor, amount, status) in expected.items():
        body = get(client, "Purchase_Order__c", PURCHASE_ORDER_IDS[name]).json()
        assert (body["Name"], body["Vendor__c"], body["Amount__c"]) == (name, vendor, amount)
        assert (body["Status__c"], body["CurrencyIsoCode"]) == (status, "USD")


def test_seed_invoices(client: TestClient) -> None:
    today = datetime.now(UTC).date()
    acme, globex, exc = "Acme Supplies", "Globex Parts", "Exception"
    expected = {
        "INV-1001": ("INV-1001", acme, 1200.0, "PO-5001", 20, exc, "needs review"),
        "INV-1002": ("INV-1002", globex, 880.0, "PO-5002", 15, exc, "amount differs from PO"),
        "INV-1003": (
            "INV-1003",
            "Initech Services",
            5000.0,
            None,
            10,
            exc,
            "missing purchase order",
        ),
        "INV-1004": ("INV-1001", acme, 1200.0, "PO-5001", 20, exc, "duplicate invoice number?"),
        "INV-1005": ("INV-1005", "Umbrella Corp", 450.0, None, 5, exc, "vendor not on allowlist"),
        "INV-1006": ("INV-1006", acme, 300.0, "PO-5004", -3, exc, "due date passed"),
        "INV-1007": ("INV-1007", globex, 800.0, "PO-5002", 30, "Paid", None),
    }
    for label, (name, vendor, amount, po, days, status, reason) in expected.items():
        body = invoice(client, INVOICE_IDS[label])
        assert (body["Name"], body["Vendor__c"], body["Amount__c"]) == (name, vendor, amount)
        assert body["Purchase_Order__c"] == (PURCHASE_ORDER_IDS[po] if po else None)
        due = datetime.strptime(body["Due_Date__c"], "%Y-%m-%d").replace(tzinfo=UTC).date()
        # Seeded relative to "now"; a test running across midnight may see one day of drift.
        assert abs((due - today) - timedelta(days=days)) <= timedelta(days=1)
        assert (body["Status__c"], body["Exception_Reason__c"], body["CurrencyIsoCode"]) == (
            status,
            reason,
            "USD",
        )
        assert body["Hold_Reason__c"] is None


def test_seed_invoice_po_relationships(client: TestClient) -> None:
    def pair(label: str) -> tuple[dict[str, Any], dict[str, Any]]:
        inv = invoice(client, INVOICE_IDS[label])
        return inv, get(client, "Purchase_Order__c", inv["Purchase_Order__c"]).json()

    exact, po = pair("INV-1001")
    assert (exact["Vendor__c"], exact["Amount__c"]) == (po["Vendor__c"], po["Amount__c"])
    over, po = pair("INV-1002")
    assert over["Amount__c"] == pytest.approx(po["Amount__c"] * 1.10)
    past_due, po = pair("INV-1006")
    assert past_due["Due_Date__c"] < datetime.now(UTC).date().isoformat()
    assert po["Status__c"] == "Closed"


def test_ids_are_stable_across_resets(client: TestClient) -> None:
    q = "SELECT Id, Name FROM Invoice__c"
    before = soql(client, q).json()["records"]
    assert patch(client, {"Status__c": "Approved"}).status_code == 204

    client.post("/_sandbox/reset")

    assert soql(client, q).json()["records"] == before
    assert invoice(client)["Status__c"] == "Exception"
    assert ledger(client) == []
