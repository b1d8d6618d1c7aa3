"""Salesforce REST endpoints: Invoice__c / Purchase_Order__c records and a SOQL subset."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tools.sandbox.salesforce import soql
from tools.sandbox.salesforce.model import (
    SOBJECTS,
    Field,
    SalesforceError,
    bad_request,
    coerce,
    normalize_id,
    not_found,
)
from tools.sandbox.seed import sf_datetime
from tools.sandbox.store import Store, record_write, utc_now

router = APIRouter(prefix="/services/data/{version}")

_VERSION = re.compile(r"v\d+\.\d")


def authenticated(request: Request) -> bool:
    """True when the request carries `Authorization: Bearer <token>` (or `OAuth <token>`)."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() in ("bearer", "oauth") and bool(token.strip())


def require_auth(request: Request, version: str) -> None:
    """Dependency: 401 INVALID_SESSION_ID without a token; 404 for a malformed API version."""
    if not authenticated(request):
        raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")
    if not _VERSION.fullmatch(version):
        raise not_found()


Authed = Annotated[None, Depends(require_auth)]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _sobject(name: str) -> str:
    """The canonical sObject name (API names are case-insensitive), or 404."""
    for known in SOBJECTS:
        if known.lower() == name.lower():
            return known
    raise not_found()


def _row(conn: sqlite3.Connection, sobject: str, record_id: str) -> sqlite3.Row:
    """The record by its 15- or 18-character id, or 404."""
    normalized = normalize_id(record_id)
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM sf_records WHERE sobject = ? AND id = ?", (sobject, normalized)
    ).fetchone()
    if row is None:
        raise not_found()
    return row


def _values(row: sqlite3.Row) -> dict[str, Any]:
    """Every field value of a record, keyed by API name."""
    return {
        "Id": row["id"],
        "IsDeleted": False,
        "CreatedDate": row["created"],
        "LastModifiedDate": row["modified"],
        "SystemModstamp": row["modified"],
        **json.loads(row["fields"]),
    }


def record(row: sqlite3.Row, version: str, names: list[str] | None = None) -> dict[str, Any]:
    """A record as the REST API renders it: `attributes` first, then the fields."""
    sobject = row["sobject"]
    values = _values(row)
    fields = [SOBJECTS[sobject][n.lower()].name for n in names] if names else None
    out: dict[str, Any] = {
        "attributes": {
            "type": sobject,
            "url": f"/services/data/{version}/sobjects/{sobject}/{row['id']}",
        }
    }
    for f in SOBJECTS[sobject].values():
        if fields is None or f.name in fields:
            out[f.name] = values.get(f.name)
    if fields is not None:  # SOQL returns fields in the order they were selected
        out = {"attributes": out["attributes"], **{name: out[name] for name in fields}}
    return out


@router.get("/sobjects/{sobject}/{record_id}")
def get_record(
    version: str,
    sobject: str,
    record_id: str,
    request: Request,
    _auth: Authed,
    fields: str | None = None,
) -> JSONResponse:
    """GET /services/data/vNN.N/sobjects/{type}/{id}[?fields=A,B]."""
    canonical = _sobject(sobject)
    names: list[str] | None = None
    if fields:
        asked = [n.strip() for n in fields.split(",") if n.strip()]
        for name in asked:
            if name.lower() not in SOBJECTS[canonical]:
                raise bad_request(
                    "INVALID_FIELD", f"No such column '{name}' on sobject of type {canonical}", []
                )
        names = ["Id", *(n for n in asked if n.lower() != "id")]  # the Id always comes back
    with _store(request).connect() as conn:
        row = _row(conn, canonical, record_id)
    return JSONResponse(record(row, version, names))


@router.patch("/sobjects/{sobject}/{record_id}")
async def patch_record(version: str, sobject: str, record_id: str, request: Request) -> Response:
    """PATCH .../sobjects/{type}/{id}: update fields; 204 on success. No idempotency keys."""
    raw = await request.body()
    try:
        payload: Any = json.loads(raw) if raw.strip() else {}
        parsed = True
    except ValueError:
        payload, parsed = {"raw": raw.decode("utf-8", "replace")}, False
    ok, store = authenticated(request), _store(request)

    def run() -> SalesforceError | None:
        with store.transaction() as conn:
            error: SalesforceError | None = None
            try:
                if not ok:
                    raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")
                if not _VERSION.fullmatch(version):
                    raise not_found()
                canonical = _sobject(sobject)
                if not parsed or not isinstance(payload, dict):
                    raise bad_request(
                        "JSON_PARSER_ERROR", "Unexpected token: the body must be a JSON object"
                    )
                _update(conn, canonical, _row(conn, canonical, record_id), payload)
            except SalesforceError as exc:
                error = exc
            record_write(
                conn,
                system="salesforce",
                method="PATCH",
                path=request.url.path,
                idempotency_key=None,
                body=payload,
                status_code=204 if error is None else error.status_code,
                outcome="applied" if error is None else "rejected",
            )
        return error

    error = await run_in_threadpool(run)
    if error is not None:
        return JSONResponse(error.body, status_code=error.status_code)
    return Response(status_code=204)


def _update(
    conn: sqlite3.Connection, sobject: str, row: sqlite3.Row, payload: dict[str, Any]
) -> None:
    """Validate the fields like Salesforce (names, types, picklists, rules) and apply them."""
    updates: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "attributes":
            continue
        spec = SOBJECTS[sobject].get(key.lower())
        if spec is None:
            raise bad_request(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject}", []
            )
        if not spec.updatable:
            raise bad_request(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {spec.name}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                [spec.name],
            )
        updates[spec.name] = coerce(conn, spec, value)
    current = json.loads(row["fields"])
    if (
        sobject == "Invoice__c"
        and current.get("Status__c") == "Paid"
        and updates.get("Status__c") == "Approved"
    ):
        raise bad_request(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION", "A paid invoice cannot be approved.", []
        )
    current.update(updates)
    conn.execute(
        "UPDATE sf_records SET fields = ?, modified = ? WHERE id = ?",
        (json.dumps(current), sf_datetime(utc_now()), row["id"]),
    )


@router.get("/query")
@router.get("/query/", include_in_schema=False)
def query(version: str, request: Request, _auth: Authed, q: str = "") -> JSONResponse:
    """GET /services/data/vNN.N/query?q=SOQL (the subset in salesforce_soql)."""
    try:
        parsed = soql.parse(q)
    except soql.MalformedQuery as exc:
        raise bad_request("MALFORMED_QUERY", str(exc)) from None
    sobject = _query_sobject(parsed.sobject)
    fields = SOBJECTS[sobject]
    for name in [*parsed.fields, *(c.field for c in parsed.where)]:
        if name.lower() not in fields:
            raise bad_request(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
    for cond in parsed.where:
        _check_literal(fields[cond.field.lower()], cond.value)
    with _store(request).connect() as conn:
        rows = conn.execute(
            "SELECT * FROM sf_records WHERE sobject = ? ORDER BY rowid", (sobject,)
        ).fetchall()
    matching = [r for r in rows if all(_matches(fields, _values(r), c) for c in parsed.where)]
    if parsed.limit is not None:
        matching = matching[: parsed.limit]
    records = [record(r, version, parsed.fields) for r in matching]
    return JSONResponse({"totalSize": len(records), "done": True, "records": records})


def _query_sobject(name: str) -> str:
    """The queried object, or Salesforce's INVALID_TYPE."""
    try:
        return _sobject(name)
    except SalesforceError:
        raise bad_request(
            "INVALID_TYPE",
            f"sObject type '{name}' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name. Please reference your "
            "WSDL or the describe call for the appropriate names.",
        ) from None


def _check_literal(spec: Field, literal: soql.Literal) -> None:
    """SOQL's typing: strings quoted, numbers, dates and booleans not."""
    if literal.value is None:
        return
    quoted_kinds = ("string", "picklist", "currency", "reference", "id")
    kind = {"double": "double", "date": "date", "boolean": "boolean"}.get(spec.kind, "string")
    if (spec.kind in quoted_kinds) != literal.quoted:
        should = "should be enclosed" if spec.kind in quoted_kinds else "should not be enclosed"
        raise bad_request(
            "INVALID_FIELD",
            f"value of filter criterion for field '{spec.name}' must be of type {kind} and "
            f"{should} in quotes",
        )


def _matches(fields: dict[str, Field], values: dict[str, Any], cond: soql.Condition) -> bool:
    """Whether one record satisfies `field op value` (text compares case-insensitively)."""
    spec = fields[cond.field.lower()]
    actual, wanted = values.get(spec.name), cond.value.value
    if actual is None or wanted is None:
        equal = actual is wanted
    elif spec.kind in ("id", "reference"):
        equal = actual == normalize_id(str(wanted))
    elif isinstance(actual, str):
        equal = actual.casefold() == str(wanted).casefold()
    else:
        equal = actual == wanted
    return equal if cond.op == "=" else not equal


def salesforce_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Render a SalesforceError raised by a read endpoint or the auth dependency."""
    assert isinstance(exc, SalesforceError)
    return JSONResponse(exc.body, status_code=exc.status_code)
