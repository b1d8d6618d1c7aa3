"""API keys: the calling system's identity and role, checked on every API request.

Keys come from OPSGATE_API_KEYS (name:role:key, for small setups) or from the key store in
the database, managed with `opsgate keys create|list|revoke`, which keeps only a SHA-256 of
each key: the keys are 256-bit random tokens, so a fast hash is enough (no password hashing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Forbidden, InputError, Unauthorized
from app.models import ApiKey, utcnow
from app.settings import ROLES, get_settings


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (its identity) and role."""

    name: str
    role: str
    workflows: frozenset[str] | None = None

    @property
    def actor(self) -> str:
        """How the caller is recorded in events and audit."""
        return f"key:{self.name}"

    def require(self, *roles: str) -> None:
        """Raise Forbidden unless the caller has one of the roles."""
        if self.role not in roles:
            raise Forbidden(
                f"key {self.name!r} has role {self.role}; this needs {' or '.join(roles)}"
            )


def key_digest(key: str) -> str:
    """The SHA-256 of a key, as the key store keeps it."""
    return hashlib.sha256(key.encode()).hexdigest()


_digest = key_digest


def _stored(session: Session, digest: str) -> Principal | None:
    row = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == digest))
    if row is None or row.revoked_at is not None:
        return None
    scope = frozenset(row.workflows) if row.workflows is not None else None
    return Principal(row.name, row.role, scope)


def principal_for_key(session: Session, key: str) -> Principal | None:
    """The principal of a raw key, or None for an unknown or revoked one."""
    for name, role, configured in get_settings().env_api_keys():
        if hmac.compare_digest(configured.encode(), key.encode()):
            return Principal(name, role)
    return _stored(session, key_digest(key))


def principal_for_digest(session: Session, digest: str) -> Principal | None:
    """The principal of the key with this SHA-256, if it still exists and is not revoked."""
    for name, role, configured in get_settings().env_api_keys():
        if hmac.compare_digest(key_digest(configured), digest):
            return Principal(name, role)
    return _stored(session, digest)


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The principal for an `Authorization: Bearer KEY` header, or Unauthorized."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send an API key as `Authorization: Bearer KEY`")
    principal = principal_for_key(session, authorization[7:].strip())
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    return principal


def create(session: Session, name: str, role: str, *, created_by: str) -> str:
    """Store a new key and return it (shown once; only its hash is kept)."""
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}")
    if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise InputError(f"a key named {name!r} already exists")
    prefix = secrets.token_hex(4)
    key = f"og_{prefix}_{secrets.token_hex(32)}"
    session.add(
        ApiKey(name=name, role=role, prefix=prefix, key_sha256=_digest(key), created_by=created_by)
    )
    return key


def revoke(session: Session, name: str) -> None:
    """Revoke a key by name; later requests with it get 401."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise InputError(f"no key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()


def listing(session: Session) -> list[dict[str, str | None]]:
    """Every stored key (never the key itself)."""
    return [
        {
            "name": k.name,
            "role": k.role,
            "prefix": f"og_{k.prefix}_",
            "created_by": k.created_by,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in session.scalars(select(ApiKey).order_by(ApiKey.name))
    ]
