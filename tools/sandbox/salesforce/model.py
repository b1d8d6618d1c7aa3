"""Salesforce's data model in the sandbox: the sObjects, their fields, ids and errors."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import date
from typing import Any

ID = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY")


@dataclass(frozen=True)
class Field:
    """One field of an sObject: API name, label (used in messages), kind and constraints."""

    name: str
    label: str
    kind: str  # id, string, double, date, datetime, boolean, picklist, currency, reference
    values: tuple[str, ...] = ()
    updatable: bool = True
    required: bool = False
    length: int = 255
    ref: str | None = None


_COMMON = (
    Field("Id", "Record ID", "id", updatable=False),
    Field("IsDeleted", "Deleted", "boolean", updatable=False),
    Field("Name", "Name", "string", required=True, length=80),
    Field("CurrencyIsoCode", "Currency ISO Code", "currency", values=CURRENCIES),
    Field("CreatedDate", "Created Date", "datetime", updatable=False),
    Field("LastModifiedDate", "Last Modified Date", "datetime", updatable=False),
    Field("SystemModstamp", "System Modstamp", "datetime", updatable=False),
    Field("Vendor__c", "Vendor", "string"),
    Field("Amount__c", "Amount", "double"),
)
INVOICE_STATUSES = ("New", "Exception", "On Hold", "Approved", "Paid", "Rejected")
SOBJECTS: dict[str, dict[str, Field]] = {
    "Invoice__c": {
        f.name.lower(): f
        for f in (
            *_COMMON,
            Field("Purchase_Order__c", "Purchase Order", "reference", ref="Purchase_Order__c"),
            Field("Due_Date__c", "Due Date", "date"),
            Field("Status__c", "Status", "picklist", values=INVOICE_STATUSES),
            Field("Exception_Reason__c", "Exception Reason", "string"),
            Field("Hold_Reason__c", "Hold Reason", "string"),
        )
    },
    "Purchase_Order__c": {
        f.name.lower(): f
        for f in (*_COMMON, Field("Status__c", "Status", "picklist", values=("Open", "Closed")))
    },
}


class SalesforceError(Exception):
    """A Salesforce REST error: the HTTP status and the error array it answers with."""

    def __init__(
        self, status_code: int, error_code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        error: dict[str, Any] = {"message": message, "errorCode": error_code}
        if fields is not None:
            error["fields"] = fields
        self.body = [error]


def not_found() -> SalesforceError:
    """Salesforce's 404 for an unknown record, object or resource."""
    return SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")


def bad_request(code: str, message: str, fields: list[str] | None = None) -> SalesforceError:
    return SalesforceError(400, code, message, fields)


def id18(id15: str) -> str:
    """The 18-character form of a 15-character Salesforce id (appends the case checksum)."""
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(id15[start : start + 5]) if "A" <= c <= "Z")
        suffix += _CHECKSUM[bits]
    return id15 + suffix


def normalize_id(raw: str) -> str | None:
    """The 18-character id a 15- or 18-character id denotes, or None if it is not one.

    An 18-character id is case-insensitive: its suffix restores the case of the first 15.
    """
    if not ID.fullmatch(raw):
        return None
    if len(raw) == 15:
        return id18(raw)
    chars, suffix = list(raw[:15]), raw[15:].upper()
    for chunk, code in enumerate(suffix):
        bits = _CHECKSUM.find(code)
        for i in range(5):
            pos = chunk * 5 + i
            chars[pos] = chars[pos].upper() if bits >> i & 1 else chars[pos].lower()
    restored = id18("".join(chars))
    return restored if restored[15:] == suffix else None


def _json_type(value: Any) -> str:
    """The JSON token name Salesforce's parser reports for a value of the wrong type."""
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, dict | list):
        return "START_OBJECT" if isinstance(value, dict) else "START_ARRAY"
    return "VALUE_NUMBER_INT" if isinstance(value, int | float) else "VALUE_STRING"


def _cannot_deserialize(kind: str, value: Any) -> SalesforceError:
    return bad_request(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {_json_type(value)} value {value} or "
        "request may be missing a required field",
    )


def coerce(conn: sqlite3.Connection, spec: Field, value: Any) -> Any:  # noqa: C901
    """The stored value for one field, or the error Salesforce gives for it."""
    if value is None or value == "":
        if spec.required:
            raise bad_request(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{spec.name}]", [spec.name]
            )
        if spec.kind in ("picklist", "currency"):
            raise bad_request(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{spec.label}: bad value for restricted picklist field: null",
                [spec.name],
            )
        return None
    if spec.kind == "double":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _cannot_deserialize("double", value)
        try:
            return float(value)
        except ValueError:
            raise _cannot_deserialize("double", value) from None
    if isinstance(value, dict | list):
        raise _cannot_deserialize("string", value)
    if not isinstance(value, str):  # a JSON number or boolean sent for a text-like field
        value = json.dumps(value)
    if spec.kind == "picklist" and value not in spec.values:
        raise bad_request(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{spec.label}: bad value for restricted picklist field: {value}",
            [spec.name],
        )
    if spec.kind == "currency" and value not in spec.values:
        raise bad_request(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{spec.label}: invalid currency code: {value}",
            [spec.name],
        )
    if spec.kind == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            raise _cannot_deserialize("date", value) from None
    if spec.kind == "reference":
        return _reference(conn, spec, value)
    if spec.kind == "string" and len(value) > spec.length:
        raise bad_request(
            "STRING_TOO_LONG",
            f"{spec.label}: data value too large: {value} (max length={spec.length})",
            [spec.name],
        )
    return value


def _reference(conn: sqlite3.Connection, spec: Field, value: str) -> str:
    """The 18-character id of the referenced record, which must exist and be of spec.ref."""
    record_id = normalize_id(value)
    if record_id is None:
        raise bad_request(
            "MALFORMED_ID", f"{spec.label}: id value of incorrect type: {value}", [spec.name]
        )
    row = conn.execute(
        "SELECT id FROM sf_records WHERE sobject = ? AND id = ?", (spec.ref, record_id)
    ).fetchone()
    if row is None:
        raise bad_request(
            "FIELD_INTEGRITY_EXCEPTION",
            f"{spec.label}: id value of incorrect type: {value}",
            [spec.name],
        )
    return str(row["id"])
