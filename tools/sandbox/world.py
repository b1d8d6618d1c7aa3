"""Control endpoints that seed a case's world: Zendesk users, Okta users and groups, and
Salesforce records, inserted as rows the emulation then serves in each system's wire format.

None of these is a write to an emulated system, so the ledger of writes stays untouched.
Charges (`POST /_sandbox/charges`) and tickets (`POST /_sandbox/tickets`) are in `app.py`.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from tools.okta.lifecycle import STATUSES
from tools.sandbox.salesforce.model import SOBJECTS, SalesforceError, coerce, normalize_id
from tools.sandbox.seed import okta_time, sf_datetime
from tools.sandbox.store import Store, iso_z, utc_now

router = APIRouter(prefix="/_sandbox", tags=["sandbox"])

_OKTA_ID = r"^[A-Za-z0-9]{20}$"
OKTA_STATUSES = STATUSES


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZendeskUserSpec(_Spec):
    """A Zendesk user (a ticket requester or an agent)."""

    id: int = Field(gt=0)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    role: Literal["end-user", "agent", "admin"] = "end-user"


class OktaGroupSpec(_Spec):
    """An Okta group."""

    id: str = Field(pattern=_OKTA_ID)
    name: str = Field(min_length=1, max_length=255)
    description: str = ""


class OktaUserSpec(_Spec):
    """An Okta user in any lifecycle status, with the groups it is a member of."""

    id: str = Field(pattern=_OKTA_ID)
    login: str = Field(min_length=3, max_length=255)
    email: str | None = None
    first_name: str = Field(min_length=1)
    last_name: str = Field(min_length=1)
    status: Literal[OKTA_STATUSES] = "ACTIVE"  # type: ignore[valid-type]
    groups: list[str] = Field(default_factory=list)


class SalesforceRecordSpec(_Spec):
    """A Salesforce record (`Invoice__c` or `Purchase_Order__c`) with its field values."""

    sobject: Literal["Invoice__c", "Purchase_Order__c"]
    id: str = Field(min_length=15, max_length=18)
    fields: dict[str, Any]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.post("/zendesk/users")
def add_zendesk_users(request: Request, users: list[ZendeskUserSpec]) -> dict[str, Any]:
    """Add or replace Zendesk users."""
    created = iso_z(utc_now() - timedelta(days=90))
    with _store(request).transaction() as conn:
        for user in users:
            conn.execute(
                "INSERT INTO zd_users (id, name, email, role, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET name = excluded.name, email = excluded.email,"
                " role = excluded.role",
                (user.id, user.name, user.email, user.role, created),
            )
    return {"added": [u.id for u in users]}


@router.post("/okta/groups")
def add_okta_groups(request: Request, groups: list[OktaGroupSpec]) -> dict[str, Any]:
    """Add or replace Okta groups."""
    created = okta_time(utc_now() - timedelta(days=400))
    with _store(request).transaction() as conn:
        for group in groups:
            conn.execute(
                "INSERT INTO okta_groups (id, name, description, created, last_updated,"
                " last_membership_updated) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE"
                " SET name = excluded.name, description = excluded.description",
                (group.id, group.name, group.description, created, created, created),
            )
    return {"added": [g.id for g in groups]}


@router.post("/okta/users")
def add_okta_users(request: Request, users: list[OktaUserSpec]) -> dict[str, Any]:
    """Add or replace Okta users (status as given) and set their group memberships."""
    now = utc_now().replace(microsecond=0)
    created = okta_time(now - timedelta(days=400))
    changed = okta_time(now - timedelta(days=2))
    with _store(request).transaction() as conn:
        for user in users:
            taken = conn.execute(
                "SELECT id FROM okta_users WHERE lower(login) = lower(?) AND id != ?",
                (user.login, user.id),
            ).fetchone()
            if taken is not None:
                raise HTTPException(409, f"login {user.login} belongs to user {taken['id']}")
            _upsert_okta_user(conn, user, created, changed, okta_time(now - timedelta(hours=5)))
            conn.execute("DELETE FROM okta_members WHERE user_id = ?", (user.id,))
            for group_id in user.groups:
                if conn.execute("SELECT 1 FROM okta_groups WHERE id = ?", (group_id,)).fetchone():
                    conn.execute(
                        "INSERT INTO okta_members (group_id, user_id) VALUES (?, ?)",
                        (group_id, user.id),
                    )
                else:
                    raise HTTPException(422, f"user {user.id}: no Okta group {group_id}")
    return {"added": [u.id for u in users]}


def _upsert_okta_user(
    conn: sqlite3.Connection, user: OktaUserSpec, created: str, changed: str, last_login: str
) -> None:
    activated = None if user.status in ("STAGED", "PROVISIONED") else created
    status_changed = created if user.status == "ACTIVE" else changed
    conn.execute(
        "INSERT INTO okta_users (id, login, email, first_name, last_name, status, created,"
        " activated, status_changed, last_login, last_updated, password_changed)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
        " login = excluded.login, email = excluded.email, first_name = excluded.first_name,"
        " last_name = excluded.last_name, status = excluded.status,"
        " status_changed = excluded.status_changed, last_updated = excluded.last_updated",
        (
            user.id,
            user.login,
            user.email or user.login,
            user.first_name,
            user.last_name,
            user.status,
            created,
            activated,
            status_changed,
            last_login,
            status_changed,
            created,
        ),
    )


@router.post("/salesforce/records")
def add_salesforce_records(request: Request, records: list[SalesforceRecordSpec]) -> dict[str, Any]:
    """Add or replace Salesforce records; each field is checked as the REST API checks it.

    Records are stored in the order given, so a purchase order listed before the invoice
    that references it can be referenced.
    """
    created = sf_datetime(utc_now() - timedelta(days=7))
    added = []
    with _store(request).transaction() as conn:
        for record in records:
            record_id = normalize_id(record.id)
            if record_id is None:
                raise HTTPException(422, f"{record.id} is not a Salesforce id")
            fields = _fields(conn, record)
            conn.execute(
                "INSERT INTO sf_records (id, sobject, fields, created, modified)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET sobject = excluded.sobject,"
                " fields = excluded.fields, modified = excluded.modified",
                (record_id, record.sobject, json.dumps(fields), created, created),
            )
            added.append(record_id)
    return {"added": added}


def _fields(conn: sqlite3.Connection, record: SalesforceRecordSpec) -> dict[str, Any]:
    """The stored field values, keyed by API name, or 422 naming the record and field."""
    known = SOBJECTS[record.sobject]
    values: dict[str, Any] = {}
    for name, value in record.fields.items():
        spec = known.get(name.lower())
        if spec is None or not spec.updatable:
            raise HTTPException(422, f"{record.id}: {record.sobject} has no writable field {name}")
        try:
            values[spec.name] = None if value is None else coerce(conn, spec, value)
        except SalesforceError as exc:
            raise HTTPException(422, f"{record.id}: {exc.body[0]['message']}") from None
    if not values.get("Name"):
        raise HTTPException(422, f"{record.id}: Name is required")
    return values
