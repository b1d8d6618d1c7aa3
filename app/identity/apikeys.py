"""API keys: the calling system's identity and role, checked on every API request.

Keys come from OPSGATE_API_KEYS (name:role:key, for small setups) or from the key store in
the database, managed with `opsgate keys create|list|revoke`, which keeps only a SHA-256 of
each key: the keys are 256-bit random tokens, so a fast hash is enough (no password hashing).
A key may be scoped to some workflows (name:role/wf1+wf2:key, `keys create --workflow`): it
then sees and acts on only those workflows' jobs and escalations.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Forbidden, InputError, Unauthorized
from app.models import ApiKey, utcnow
from app.settings import ROLES, get_settings


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (its identity), role and workflow scope."""

    name: str
    role: str
    # The workflows the key may see and act on (None: every workflow).
    workflows: frozenset[str] | None = None
    # How the identity was proven: "key" (an API key) or "sso" (the console's OIDC sign-in).
    via: str = "key"

    @property
    def actor(self) -> str:
        """How the caller is recorded in events and audit: key:<name> or sso:<name>."""
        return f"{self.via}:{self.name}"

    def require(self, *roles: str) -> None:
        """Raise Forbidden unless the caller has one of the roles."""
        if self.role not in roles:
            raise Forbidden(
                f"key {self.name!r} has role {self.role}; this needs {' or '.join(roles)}"
            )

    def covers(self, workflow: str) -> bool:
        """Whether the key's scope includes the workflow."""
        return self.workflows is None or workflow in self.workflows

    def require_workflow(self, workflow: str) -> None:
        """Raise Forbidden unless the key's scope includes the workflow."""
        if not self.covers(workflow):
            raise Forbidden(
                f"key {self.name!r} may not act on {workflow}; "
                f"its scope is {describe_scope(self.workflows)}"
            )


def describe_scope(workflows: frozenset[str] | list[str] | None) -> str:
    """A scope as people read it: `every workflow` or the names, comma-separated."""
    return "every workflow" if workflows is None else ", ".join(sorted(workflows))


def key_digest(key: str) -> str:
    """The SHA-256 (hex) a key is stored and looked up by."""
    return hashlib.sha256(key.encode()).hexdigest()


def _from_row(row: ApiKey) -> Principal:
    scope = frozenset(str(w) for w in row.workflows) if row.workflows is not None else None
    return Principal(row.name, row.role, scope)


def principal_for_key(session: Session, key: str) -> Principal | None:
    """The principal a raw key belongs to; None for an unknown or revoked key."""
    for entry in get_settings().env_api_keys():
        if hmac.compare_digest(entry.key.encode(), key.encode()):
            return Principal(entry.name, entry.role, entry.workflows)
    row = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == key_digest(key)))
    if row is None or row.revoked_at is not None:
        return None
    return _from_row(row)


def principal_for_digest(session: Session, digest: str) -> Principal | None:
    """The principal whose key has this digest, if that key is still configured or stored
    and not revoked (a console session re-checks its key on every request with it)."""
    for entry in get_settings().env_api_keys():
        if hmac.compare_digest(key_digest(entry.key).encode(), digest.encode()):
            return Principal(entry.name, entry.role, entry.workflows)
    row = session.scalar(
        select(ApiKey).where(ApiKey.key_sha256 == digest, ApiKey.revoked_at.is_(None))
    )
    return _from_row(row) if row is not None else None


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The principal for an `Authorization: Bearer KEY` header, or Unauthorized."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send an API key as `Authorization: Bearer KEY`")
    principal = principal_for_key(session, authorization[7:].strip())
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    return principal


def create(
    session: Session,
    name: str,
    role: str,
    *,
    created_by: str,
    workflows: list[str] | None = None,
) -> str:
    """Store a new key and return it (shown once; only its hash is kept); `workflows`
    scopes it (None: every workflow; the caller checks the names are registered)."""
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}")
    if workflows is not None and not workflows:
        raise InputError("a scope needs at least one workflow (or none for every workflow)")
    if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise InputError(f"a key named {name!r} already exists")
    prefix = secrets.token_hex(4)
    key = f"og_{prefix}_{secrets.token_hex(32)}"
    session.add(
        ApiKey(
            name=name,
            role=role,
            prefix=prefix,
            key_sha256=key_digest(key),
            created_by=created_by,
            workflows=sorted(set(workflows)) if workflows is not None else None,
        )
    )
    return key


def revoke(session: Session, name: str) -> None:
    """Revoke a key by name; later requests with it get 401."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise InputError(f"no key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()


def listing(session: Session) -> list[dict[str, Any]]:
    """Every stored key (never the key itself); `workflows` None means every workflow."""
    return [
        {
            "name": k.name,
            "role": k.role,
            "prefix": f"og_{k.prefix}_",
            "created_by": k.created_by,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            "workflows": sorted(str(w) for w in k.workflows) if k.workflows is not None else None,
        }
        for k in session.scalars(select(ApiKey).order_by(ApiKey.name))
    ]
