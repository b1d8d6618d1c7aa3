"""Okta endpoints: users, user lifecycle (reset password, suspend) and group membership."""

from __future__ import annotations

import secrets
import sqlite3
import string
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tools.okta.lifecycle import allows
from tools.sandbox.seed import OKTA_USER_TYPE_ID, okta_time
from tools.sandbox.store import Store, record_write, utc_now

router = APIRouter(prefix="/api/v1")

_ALPHANUM = string.ascii_letters + string.digits


class OktaError(Exception):
    """An Okta API error: HTTP status plus Okta's error object."""

    def __init__(
        self,
        status_code: int,
        code: str,
        summary: str,
        causes: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(summary)
        self.status_code = status_code
        self.headers = headers or {}
        self.body = {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oae" + "".join(secrets.choice(_ALPHANUM) for _ in range(19)),
            "errorCauses": [{"errorSummary": c} for c in causes or ()],
        }


def not_found(resource: str, kind: str) -> OktaError:
    """E0000007 for an unknown user or group."""
    return OktaError(404, "E0000007", f"Not found: Resource not found: {resource} ({kind})")


def _invalid_token() -> OktaError:
    return OktaError(401, "E0000011", "Invalid token provided")


def authenticated(request: Request) -> bool:
    """True when the request carries `Authorization: SSWS <api token>`."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return scheme == "SSWS" and bool(token.strip())


def require_auth(request: Request) -> None:
    """Dependency: Okta's 401 unless an SSWS token is present."""
    if not authenticated(request):
        raise _invalid_token()


Authed = Annotated[None, Depends(require_auth)]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _user_row(conn: sqlite3.Connection, key: str, *, by_login: bool = True) -> sqlite3.Row:
    """A user by id, or (reads only) by login or unambiguous login shortname; else 404."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM okta_users WHERE id = ?", (key,)
    ).fetchone()
    if row is None and by_login:
        row = conn.execute(
            "SELECT * FROM okta_users WHERE lower(login) = lower(?)", (key,)
        ).fetchone()
        if row is None:
            rows = conn.execute(
                "SELECT * FROM okta_users WHERE lower(login) LIKE lower(?) || '@%'", (key,)
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
    if row is None:
        raise not_found(key, "User")
    return row


def _group_row(conn: sqlite3.Connection, group_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM okta_groups WHERE id = ?", (group_id,)
    ).fetchone()
    if row is None:
        raise not_found(group_id, "UserGroup")
    return row


def _link(href: str, method: str | None = None) -> dict[str, str]:
    return {"href": href, **({"method": method} if method else {})}


def user_object(row: sqlite3.Row, base: str) -> dict[str, Any]:
    """An Okta User object."""
    me = f"{base}/api/v1/users/{row['id']}"
    links = {"self": _link(me), "type": _link(f"{base}/api/v1/meta/types/user/{OKTA_USER_TYPE_ID}")}
    status = row["status"]
    if allows("okta.reset_password", status):
        links["resetPassword"] = _link(f"{me}/lifecycle/reset_password", "POST")
    if status == "LOCKED_OUT":
        links["unlock"] = _link(f"{me}/lifecycle/unlock", "POST")
    if allows("okta.suspend_user", status):
        links["suspend"] = _link(f"{me}/lifecycle/suspend", "POST")
    if status == "SUSPENDED":
        links["unsuspend"] = _link(f"{me}/lifecycle/unsuspend", "POST")
    if status != "DEPROVISIONED":
        links["deactivate"] = _link(f"{me}/lifecycle/deactivate", "POST")
    return {
        "id": row["id"],
        "status": status,
        "created": row["created"],
        "activated": row["activated"],
        "statusChanged": row["status_changed"],
        "lastLogin": row["last_login"],
        "lastUpdated": row["last_updated"],
        "passwordChanged": row["password_changed"],
        "type": {"id": OKTA_USER_TYPE_ID},
        "profile": {
            "firstName": row["first_name"],
            "lastName": row["last_name"],
            "mobilePhone": None,
            "secondEmail": None,
            "login": row["login"],
            "email": row["email"],
        },
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": links,
    }


def group_object(row: sqlite3.Row, base: str) -> dict[str, Any]:
    """An Okta Group object."""
    me = f"{base}/api/v1/groups/{row['id']}"
    return {
        "id": row["id"],
        "created": row["created"],
        "lastUpdated": row["last_updated"],
        "lastMembershipUpdated": row["last_membership_updated"],
        "objectClass": ["okta:user_group"],
        "type": "OKTA_GROUP",
        "profile": {"name": row["name"], "description": row["description"]},
        "_links": {"users": _link(f"{me}/users"), "apps": _link(f"{me}/apps")},
    }


@router.get("/users/{user}")
def get_user(user: str, request: Request, _auth: Authed) -> JSONResponse:
    """GET /api/v1/users/{id, login or login shortname}."""
    with _store(request).connect() as conn:
        row = _user_row(conn, user)
    return JSONResponse(user_object(row, _base(request)))


@router.get("/users/{user}/groups")
def user_groups(user: str, request: Request, _auth: Authed) -> JSONResponse:
    """GET /api/v1/users/{id}/groups."""
    with _store(request).connect() as conn:
        row = _user_row(conn, user)
        groups = conn.execute(
            "SELECT g.* FROM okta_groups g JOIN okta_members m ON m.group_id = g.id"
            " WHERE m.user_id = ? ORDER BY g.id",
            (row["id"],),
        ).fetchall()
    return JSONResponse([group_object(g, _base(request)) for g in groups])


@router.get("/groups/{group_id}")
def get_group(group_id: str, request: Request, _auth: Authed) -> JSONResponse:
    """GET /api/v1/groups/{groupId}."""
    with _store(request).connect() as conn:
        row = _group_row(conn, group_id)
    return JSONResponse(group_object(row, _base(request)))


@router.get("/groups/{group_id}/users")
def group_users(group_id: str, request: Request, _auth: Authed) -> JSONResponse:
    """GET /api/v1/groups/{groupId}/users."""
    with _store(request).connect() as conn:
        _group_row(conn, group_id)
        users = conn.execute(
            "SELECT u.* FROM okta_users u JOIN okta_members m ON m.user_id = u.id"
            " WHERE m.group_id = ? ORDER BY u.id",
            (group_id,),
        ).fetchall()
    return JSONResponse([user_object(u, _base(request)) for u in users])


Effect = Callable[[sqlite3.Connection], tuple[int, Any, str]]


async def _write(request: Request, effect: Effect) -> Response:
    """Run one write in a transaction with its ledger entry; OktaErrors are 'rejected'."""
    ok, store = authenticated(request), _store(request)

    def run() -> tuple[int, Any, dict[str, str]]:
        with store.transaction() as conn:
            headers: dict[str, str] = {}
            try:
                if not ok:
                    raise _invalid_token()
                status, body, outcome = effect(conn)
            except OktaError as exc:
                status, body, outcome, headers = exc.status_code, exc.body, "rejected", exc.headers
            record_write(
                conn,
                system="okta",
                method=request.method,
                path=request.url.path,
                idempotency_key=None,
                body=dict(request.query_params) or None,
                status_code=status,
                outcome=outcome,
            )
        return status, body, headers

    status, body, headers = await run_in_threadpool(run)
    if status == 204:
        return Response(status_code=204)
    return JSONResponse(body, status_code=status, headers=headers)


def _set_status(conn: sqlite3.Connection, user_id: str, status: str) -> None:
    now = okta_time(utc_now())
    conn.execute(
        "UPDATE okta_users SET status = ?, status_changed = ?, last_updated = ? WHERE id = ?",
        (status, now, now, user_id),
    )


@router.post("/users/{user_id}/lifecycle/reset_password")
async def reset_password(
    user_id: str, request: Request, send_email: Annotated[str, Query(alias="sendEmail")] = "true"
) -> Response:
    """POST .../lifecycle/reset_password?sendEmail=true|false: an activated user (ACTIVE,
    RECOVERY, LOCKED_OUT, PASSWORD_EXPIRED) -> RECOVERY; any other status is refused."""
    emailed = send_email.lower() != "false"

    def effect(conn: sqlite3.Connection) -> tuple[int, Any, str]:
        row = _user_row(conn, user_id, by_login=False)
        if not allows("okta.reset_password", row["status"]):
            raise OktaError(
                403, "E0000038", "This operation is not allowed in the user's current status."
            )
        _set_status(conn, row["id"], "RECOVERY")
        if emailed:
            return 200, {}, "applied"
        token = "".join(secrets.choice(_ALPHANUM) for _ in range(20))
        return 200, {"resetPasswordUrl": f"{_base(request)}/reset_password/{token}"}, "applied"

    return await _write(request, effect)


@router.post("/users/{user_id}/lifecycle/suspend")
async def suspend(user_id: str, request: Request) -> Response:
    """POST .../lifecycle/suspend: ACTIVE -> SUSPENDED."""

    def effect(conn: sqlite3.Connection) -> tuple[int, Any, str]:
        row = _user_row(conn, user_id, by_login=False)
        if not allows("okta.suspend_user", row["status"]):
            reason = "Cannot suspend a user that is not active"
            raise OktaError(400, "E0000001", f"Api validation failed: {reason}", [reason])
        _set_status(conn, row["id"], "SUSPENDED")
        return 200, {}, "applied"

    return await _write(request, effect)


@router.put("/groups/{group_id}/users/{user_id}")
async def add_member(group_id: str, user_id: str, request: Request) -> Response:
    """PUT /api/v1/groups/{gid}/users/{uid}: 204; a repeat is a no-op (ledger: noop)."""

    def effect(conn: sqlite3.Connection) -> tuple[int, Any, str]:
        _group_row(conn, group_id)
        _user_row(conn, user_id, by_login=False)
        added = conn.execute(
            "INSERT OR IGNORE INTO okta_members (group_id, user_id) VALUES (?, ?)",
            (group_id, user_id),
        ).rowcount
        if not added:
            return 204, None, "noop"
        conn.execute(
            "UPDATE okta_groups SET last_membership_updated = ? WHERE id = ?",
            (okta_time(utc_now()), group_id),
        )
        return 204, None, "applied"

    return await _write(request, effect)


def okta_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Render an OktaError raised by a read endpoint or the auth dependency."""
    assert isinstance(exc, OktaError)
    return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)
