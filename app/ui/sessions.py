"""Console sign-in: an API key exchanged once for a server-side session, and CSRF tokens.

Starlette's SessionMiddleware keeps the session's data in the (signed) cookie itself, so a
session could not be ended from the server: signing out, revoking the key or an expiry would
leave a copied cookie working until it ran out. Here the browser holds only a random token
(signed, so a forged cookie is refused before any database read); the session row holds its
SHA-256, who signed in with which key, and when and why the session ended. Each request
re-checks that the key it was opened with still exists and is not revoked. A session opened
through the OIDC provider (`app.ui.oidc`) has no key: it ends at its expiry or sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import Unauthorized
from app.identity import apikeys
from app.models import UiSession, as_utc, utcnow
from app.settings import get_settings

COOKIE = "opsgate_session"
# The sign-in form has no session yet: a random value in its own cookie, echoed (signed) in
# the form, stops a cross-site page from signing a reviewer in as someone else.
PRE_COOKIE = "opsgate_signin"


@dataclass(frozen=True)
class Reviewer:
    """The signed-in person: the key's (or the provider's) principal, and the session's CSRF
    token."""

    principal: apikeys.Principal
    session_id: int
    csrf: str
    expires_at: str

    @property
    def actor(self) -> str:
        """How decisions are recorded: the key's identity, exactly as over /v1 (key:<name>), or
        sso:<name> for a sign-in through the OIDC provider."""
        return self.principal.actor


def _secret() -> bytes:
    return get_settings().session_secret.get_secret_value().encode()


def sign(value: str, purpose: str) -> str:
    """An HMAC of `value` for one purpose (cookie, csrf, signin), hex."""
    return hmac.new(_secret(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cookie_value(token: str) -> str:
    """The cookie for a session token: the token and its signature."""
    return f"{token}.{sign(token, 'cookie')}"


def _token_of(cookie: str | None) -> str | None:
    if not cookie or "." not in cookie:
        return None
    token, _, signature = cookie.rpartition(".")
    if not hmac.compare_digest(signature, sign(token, "cookie")):
        return None
    return token


def sign_in(session: Session, key: str, *, client: str, user_agent: str) -> tuple[str, Reviewer]:
    """Open a session for a valid key; returns the cookie value and the reviewer. Raises
    Unauthorized for an unknown or revoked key and Forbidden for a requester's key (the
    console is for reviewers and admins). The caller commits."""
    principal = apikeys.principal_for_key(session, key.strip())
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    return open_session(
        session,
        principal,
        key_sha256=apikeys.key_digest(key.strip()),
        client=client,
        user_agent=user_agent,
    )


def sign_in_oidc(
    session: Session,
    principal: apikeys.Principal,
    subject: str,
    *,
    client: str,
    user_agent: str,
) -> tuple[str, Reviewer]:
    """Open a session for a person the OIDC provider vouched for (`app.ui.oidc` checked the
    ID token and mapped its claims to `principal`). Raises Forbidden for a role that is not
    the console's. The caller commits."""
    return open_session(
        session, principal, subject=subject[:255], client=client, user_agent=user_agent
    )


def open_session(
    session: Session,
    principal: apikeys.Principal,
    *,
    key_sha256: str | None = None,
    subject: str | None = None,
    client: str,
    user_agent: str,
) -> tuple[str, Reviewer]:
    """The one place a console session row is made, for either way of signing in: a key's
    (`key_sha256` set) or the OIDC provider's (`subject` set)."""
    principal.require("reviewer", "admin")
    token = secrets.token_urlsafe(32)
    row = UiSession(
        token_sha256=_digest(token),
        principal=principal.name,
        role=principal.role,
        workflows=sorted(principal.workflows) if principal.workflows is not None else None,
        source="key" if key_sha256 is not None else "oidc",
        key_sha256=key_sha256,
        subject=subject,
        client=client[:255],
        user_agent=user_agent[:255],
        expires_at=utcnow() + timedelta(seconds=get_settings().ui_session_ttl),
    )
    session.add(row)
    session.flush()
    return cookie_value(token), _reviewer(principal, row, token)


def _reviewer(principal: apikeys.Principal, row: UiSession, token: str) -> Reviewer:
    return Reviewer(
        principal=principal,
        session_id=row.id,
        csrf=sign(token, "csrf"),
        expires_at=as_utc(row.expires_at).isoformat(timespec="seconds"),  # type: ignore[union-attr]
    )


def current(session: Session, cookie: str | None) -> Reviewer | None:
    """The reviewer of a session cookie, or None when it is forged, unknown, ended, expired,
    or (for a key's session) its key was revoked: then the session is ended here, with that
    reason."""
    token = _token_of(cookie)
    if token is None:
        return None
    row = session.scalar(select(UiSession).where(UiSession.token_sha256 == _digest(token)))
    if row is None or row.ended_at is not None:
        return None
    expires = as_utc(row.expires_at)
    if expires is None or expires <= utcnow():
        _end(session, row.id, "expired")
        return None
    principal, dead = _principal_of(session, row)
    if principal is None:
        _end(session, row.id, dead)
        return None
    return _reviewer(principal, row, token)


def _principal_of(session: Session, row: UiSession) -> tuple[apikeys.Principal | None, str]:
    """Who a live session row speaks for, or None and why the session must end."""
    if row.source == "oidc":
        # The provider vouched for the person once, at sign-in; there is no key to re-check,
        # so the session lives until it expires or the person signs out.
        scope = frozenset(str(w) for w in row.workflows) if row.workflows is not None else None
        return apikeys.Principal(row.principal, row.role, scope, via="sso"), ""
    principal = apikeys.principal_for_digest(session, row.key_sha256) if row.key_sha256 else None
    if principal is None or principal.name != row.principal:
        return None, "key_revoked"
    if principal.role not in ("reviewer", "admin"):
        return None, "role_changed"
    return principal, ""


def _end(session: Session, session_id: int, reason: str) -> None:
    # Ended in its own statement and committed at once: the request that found the session
    # dead goes on to a redirect, and the record of why it ended must not wait for it.
    session.execute(
        update(UiSession)
        .where(UiSession.id == session_id, UiSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
    )
    session.commit()


def sign_out(session: Session, reviewer: Reviewer) -> None:
    """End the reviewer's session (the caller commits)."""
    _end(session, reviewer.session_id, "signed_out")


def csrf_ok(reviewer: Reviewer, submitted: str | None) -> bool:
    """Whether a form's CSRF token is this session's."""
    return bool(submitted) and hmac.compare_digest(reviewer.csrf, submitted or "")


def new_signin_nonce() -> tuple[str, str]:
    """A sign-in form's nonce (for its cookie) and the token the form echoes."""
    nonce = secrets.token_urlsafe(24)
    return nonce, sign(nonce, "signin")


def signin_ok(nonce: str | None, submitted: str | None) -> bool:
    """Whether the sign-in form's token matches the nonce in its cookie."""
    return bool(nonce and submitted) and hmac.compare_digest(
        sign(nonce or "", "signin"), submitted or ""
    )
