"""Zendesk Support endpoints: tickets, ticket comments and users, in Zendesk's JSON shapes."""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tools.sandbox.seed import AGENT_USER_ID
from tools.sandbox.store import Store, iso_z, record_write, utc_now

router = APIRouter(prefix="/api/v2")

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
# Fields Zendesk still lets you edit on a closed ticket; anything else is refused.
CLOSED_EDITABLE = {"tags", "priority", "subject"}
_TAG = re.compile(r"<[^>]+>")
COMMENT_EVENT_FIELDS = (
    "id",
    "type",
    "author_id",
    "body",
    "html_body",
    "plain_body",
    "public",
    "attachments",
    "audit_id",
)


class ZendeskError(Exception):
    """Raised when a Zendesk request fails; carries the HTTP status and Zendesk's error body."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status_code = status_code
        self.body = body


def _not_found() -> ZendeskError:
    """Zendesk's 404 for an unknown record."""
    return ZendeskError(404, {"error": "RecordNotFound", "description": "Not found"})


def _invalid(field: str, description: str) -> ZendeskError:
    """Zendesk's 422 for a record that fails validation."""
    return ZendeskError(
        422,
        {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {field: [{"description": description, "error": "InvalidValue"}]},
        },
    )


def authenticated(request: Request) -> bool:
    """True when the request carries Basic (email/token:apitoken) or Bearer credentials."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return bool(value)
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(user and sep and secret)


def require_auth(request: Request) -> None:
    """Dependency: 401 with Zendesk's body unless the request is authenticated."""
    if not authenticated(request):
        raise ZendeskError(401, {"error": "Couldn't authenticate you"})


Authed = Annotated[None, Depends(require_auth)]


def _store(request: Request) -> Store:
    """The app's Store."""
    store: Store = request.app.state.store
    return store


def _record_id(raw: str) -> int:
    """A numeric record id from the path; anything else is simply not found."""
    if not raw.isdigit():
        raise _not_found()
    return int(raw)


def _ticket_row(conn: sqlite3.Connection, ticket_id: int) -> sqlite3.Row:
    """The ticket's row, or Zendesk's 404."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tickets WHERE id = ?", (ticket_id,)
    ).fetchone()
    if row is None:
        raise _not_found()
    return row


def ticket_object(row: sqlite3.Row, base_url: str) -> dict[str, Any]:
    """A Zendesk Ticket object from a tickets row."""
    return {
        "id": row["id"],
        "url": f"{base_url}/api/v2/tickets/{row['id']}.json",
        "external_id": row["external_id"],
        "via": {"channel": "email"},
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "type": row["type"],
        "subject": row["subject"],
        "raw_subject": row["subject"],
        "description": row["description"],
        "priority": row["priority"],
        "status": row["status"],
        "requester_id": row["requester_id"],
        "submitter_id": row["submitter_id"],
        "assignee_id": row["assignee_id"],
        "organization_id": row["organization_id"],
        "group_id": row["group_id"],
        "tags": json.loads(row["tags"]),
        "custom_fields": [],
    }


def _html(body: str) -> str:
    """The html_body Zendesk renders for a plain-text comment."""
    paragraph = html.escape(body).replace("\n", "<br>")
    return f'<div class="zd-comment" dir="auto"><p dir="auto">{paragraph}</p></div>'


def comment_object(row: sqlite3.Row) -> dict[str, Any]:
    """A Zendesk Ticket Comment object from a comments row."""
    return {
        "id": row["id"],
        "type": "Comment",
        "author_id": row["author_id"],
        "body": row["body"],
        "html_body": _html(row["body"]),
        "plain_body": row["body"],
        "public": bool(row["public"]),
        "audit_id": row["audit_id"],
        "via": {"channel": row["channel"]},
        "created_at": row["created_at"],
        "attachments": [],
        "metadata": {"system": {}, "custom": {}},
    }


@router.get("/tickets/{ticket_id}.json")
def show_ticket(ticket_id: str, request: Request, _auth: Authed) -> dict[str, Any]:
    """GET /api/v2/tickets/{id}.json."""
    with _store(request).connect() as conn:
        row = _ticket_row(conn, _record_id(ticket_id))
    return {"ticket": ticket_object(row, _base(request))}


@router.get("/tickets/{ticket_id}/comments.json")
def list_comments(ticket_id: str, request: Request, _auth: Authed) -> dict[str, Any]:
    """GET /api/v2/tickets/{id}/comments.json, oldest first."""
    with _store(request).connect() as conn:
        row = _ticket_row(conn, _record_id(ticket_id))
        rows = conn.execute(
            "SELECT * FROM comments WHERE ticket_id = ? ORDER BY id", (row["id"],)
        ).fetchall()
    comments = [comment_object(r) for r in rows]
    return {"comments": comments, "next_page": None, "previous_page": None, "count": len(comments)}


@router.get("/users/{user_id}.json")
def show_user(user_id: str, request: Request, _auth: Authed) -> dict[str, Any]:
    """GET /api/v2/users/{id}.json."""
    with _store(request).connect() as conn:
        row = conn.execute("SELECT * FROM zd_users WHERE id = ?", (_record_id(user_id),)).fetchone()
    if row is None:
        raise _not_found()
    user = {
        "id": row["id"],
        "url": f"{_base(request)}/api/v2/users/{row['id']}.json",
        "name": row["name"],
        "email": row["email"],
        "role": row["role"],
        "active": True,
        "created_at": row["created_at"],
        "updated_at": row["created_at"],
    }
    return {"user": user}


@router.put("/tickets/{ticket_id}.json")
async def update_ticket(ticket_id: str, request: Request) -> JSONResponse:
    """PUT /api/v2/tickets/{id}.json: apply fields and append a comment; no idempotency keys."""
    raw = await request.body()
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = None
    ok, base, store = authenticated(request), _base(request), _store(request)

    def run() -> tuple[int, dict[str, Any]]:
        """Apply the update and append the ledger entry in one transaction."""
        with store.transaction() as conn:
            try:
                if not ok:
                    raise ZendeskError(401, {"error": "Couldn't authenticate you"})
                status, body, outcome = 200, _update(conn, ticket_id, payload, base), "applied"
            except ZendeskError as exc:
                status, body, outcome = exc.status_code, exc.body, "rejected"
            record_write(
                conn,
                system="zendesk",
                method="PUT",
                path=request.url.path,
                idempotency_key=request.headers.get("idempotency-key"),
                body=payload if payload is not None else {"raw": raw.decode("utf-8", "replace")},
                status_code=status,
                outcome=outcome,
            )
        return status, body

    status, body = await run_in_threadpool(run)
    return JSONResponse(body, status_code=status)


def _base(request: Request) -> str:
    """The sandbox's own base URL, for the `url` fields Zendesk includes."""
    return str(request.base_url).rstrip("/")


def _changes(payload: Any) -> dict[str, Any]:
    """The `ticket` object of a PUT body, or Zendesk's 400 for a malformed body."""
    if not isinstance(payload, dict) or not isinstance(payload.get("ticket"), dict):
        description = 'Expected a JSON body {"ticket": {...}}'
        raise ZendeskError(400, {"error": "InvalidValue", "description": description})
    ticket: dict[str, Any] = payload["ticket"]
    return ticket


def _field_updates(changes: dict[str, Any], row: sqlite3.Row) -> dict[str, Any]:
    """Validated column values for the scalar fields present in the update."""
    updates: dict[str, Any] = {}
    if "status" in changes:
        status = changes["status"]
        if status not in STATUSES or (status == "new" and row["status"] != "new"):
            raise _invalid("status", f"Status: {status!r} is not a valid status for this ticket")
        updates["status"] = status
    if "priority" in changes:
        if changes["priority"] not in PRIORITIES:
            raise _invalid("priority", f"Priority: {changes['priority']!r} is not valid")
        updates["priority"] = changes["priority"]
    if "tags" in changes:
        tags = changes["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _invalid("tags", "Tags: must be a list of strings")
        # Zendesk stores tags lowercased with spaces as separators, without duplicates.
        words = [w.lower() for t in tags for w in t.split()]
        updates["tags"] = json.dumps(list(dict.fromkeys(words)))
    if "group_id" in changes:
        group_id = changes["group_id"]
        if group_id is not None and (isinstance(group_id, bool) or not isinstance(group_id, int)):
            raise _invalid("group_id", "Group: must be an integer id")
        updates["group_id"] = group_id
    if updates.get("status") == "solved" and row["assignee_id"] is None:
        # Zendesk refuses Solved without an assignee unless it auto-assigns the solver.
        updates["assignee_id"] = AGENT_USER_ID
    return updates


def _comment(conn: sqlite3.Connection, changes: dict[str, Any]) -> dict[str, Any] | None:
    """The validated comment of an update: body, public flag and author."""
    comment = changes.get("comment")
    if comment is None:
        return None
    if not isinstance(comment, dict):
        raise _invalid("comment", "Comment: must be an object")
    body = comment.get("body") or _TAG.sub("", str(comment.get("html_body") or ""))
    if not isinstance(body, str) or not body.strip():
        raise _invalid("comment", "Comment: cannot be blank")
    public = comment.get("public", True)
    if not isinstance(public, bool):
        raise _invalid("comment", "Comment: public must be true or false")
    author = comment.get("author_id", AGENT_USER_ID)
    if conn.execute("SELECT 1 FROM zd_users WHERE id = ?", (author,)).fetchone() is None:
        raise _invalid("comment", f"Comment: author {author!r} is not a user")
    return {"body": html.unescape(body), "public": public, "author_id": author}


def _update(conn: sqlite3.Connection, raw_id: str, payload: Any, base: str) -> dict[str, Any]:
    """Validate and apply one ticket update; returns Zendesk's {ticket, audit} body."""
    row = _ticket_row(conn, _record_id(raw_id))
    changes = _changes(payload)
    if row["status"] == "closed" and set(changes) - CLOSED_EDITABLE:
        raise _invalid("status", "Status: closed prevents ticket update")
    updates = _field_updates(changes, row)
    if isinstance(changes.get("subject"), str) and changes["subject"].strip():
        updates["subject"] = changes["subject"]
    comment = _comment(conn, changes)
    now = iso_z(utc_now())
    events: list[dict[str, Any]] = []
    audit_id = conn.execute(
        "INSERT INTO audits (ticket_id, author_id, channel, events, created_at)"
        " VALUES (?, ?, 'api', '[]', ?)",
        (row["id"], AGENT_USER_ID, now),
    ).lastrowid
    if comment is not None:
        events.append(_append_comment(conn, row["id"], audit_id, comment, now))
    for column, value in updates.items():
        previous = row[column]
        if value != previous:
            events.append(_change_event(len(events), audit_id, column, value, previous))
    assignments = "".join(f"{column} = ?, " for column in updates)
    conn.execute(
        f"UPDATE tickets SET {assignments}updated_at = ? WHERE id = ?",  # noqa: S608 - known columns
        (*updates.values(), now, row["id"]),
    )
    conn.execute("UPDATE audits SET events = ? WHERE id = ?", (json.dumps(events), audit_id))
    audit = {
        "id": audit_id,
        "ticket_id": row["id"],
        "created_at": now,
        "author_id": AGENT_USER_ID,
        "metadata": {"system": {}, "custom": {}},
        "via": {"channel": "api"},
        "events": events,
    }
    return {"ticket": ticket_object(_ticket_row(conn, row["id"]), base), "audit": audit}


def _append_comment(
    conn: sqlite3.Connection,
    ticket_id: int,
    audit_id: int | None,
    comment: dict[str, Any],
    now: str,
) -> dict[str, Any]:
    """Store the comment and return it as the audit's Comment event."""
    comment_id = conn.execute(
        "INSERT INTO comments (ticket_id, audit_id, author_id, body, public, channel,"
        " created_at) VALUES (?, ?, ?, ?, ?, 'api', ?)",
        (ticket_id, audit_id, comment["author_id"], comment["body"], comment["public"], now),
    ).lastrowid
    stored = comment_object(
        conn.execute("SELECT * FROM comments WHERE id = ?", (comment_id,)).fetchone()
    )
    return {k: stored[k] for k in COMMENT_EVENT_FIELDS}


def _change_event(
    n: int, audit_id: int | None, column: str, value: Any, previous: Any
) -> dict[str, Any]:
    """A Change audit event; tags are rendered as lists, as Zendesk does."""
    if column == "tags":
        value, previous = json.loads(value), json.loads(previous)
    return {
        # Event ids only need to be unique; derive them from the audit id.
        "id": (audit_id or 0) * 100 + n + 1,
        "type": "Change",
        "field_name": column,
        "value": value,
        "previous_value": previous,
    }


def zendesk_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Render a ZendeskError raised by a read endpoint or the auth dependency."""
    assert isinstance(exc, ZendeskError)
    return JSONResponse(exc.body, status_code=exc.status_code)
