"""Approval tokens: a reviewer's yes to one exact action, signed, expiring, single use.

A token binds the canonical hash of the action (job, step, revision, tool, arguments and the
workflow's policy version) and names the key that signed it, so keys can rotate: the first
key of OPSGATE_APPROVAL_KEYS signs, every listed key verifies. The proposal stage and the
executor both verify it before they let an action that needs approval through; the executor
refuses (and records why) a missing, forged, expired, reused or mismatched token. HMAC-SHA256
from the standard library: the token is ours end to end, no JWT library needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.chain import canonical_json, sha256_hex
from app.errors import TokenRefused
from app.jobs.steps import ApprovalToken, StoredStep
from app.models import Approval, PlanStep, new_id, utcnow
from app.settings import get_settings


def action_hash(
    job_id: str, step: PlanStep | StoredStep | Mapping[str, Any], policy_version: str
) -> str:
    """The canonical hash of one exact action under one policy version (a step's row, the
    stages' StoredStep, or the same fields as a mapping: all hash alike)."""
    get = step.get if isinstance(step, Mapping) else lambda k: getattr(step, k)
    return sha256_hex(
        canonical_json(
            {
                "job": job_id,
                "step": get("step_id"),
                "revision": get("revision"),
                "tool": get("tool"),
                "args": get("args"),
                "policy_version": policy_version,
            }
        )
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def issue(approval_id: str, action: str, approvers: list[str], ttl: float) -> tuple[str, str, Any]:
    """A signed token for `action`; returns (token, key id, expiry)."""
    kid, secret = get_settings().signing_keys()[0]
    expires = utcnow() + timedelta(seconds=ttl)
    payload = _b64(
        canonical_json(
            {
                "id": approval_id,
                "kid": kid,
                "action": action,
                "approvers": approvers,
                "exp": int(expires.timestamp()),
            }
        ).encode()
    )
    return f"{payload}.{_sign(secret, payload)}", kid, expires


@dataclass(frozen=True)
class Verified:
    """What a valid token says."""

    approval_id: str
    approvers: list[str]
    key_id: str


def verify(token: str, expected_action: str) -> Verified:
    """Check signature, key, expiry and binding; TokenRefused says which failed."""
    try:
        payload, signature = token.split(".")
        claims = json.loads(_unb64(payload))
    except (ValueError, json.JSONDecodeError) as exc:
        raise TokenRefused("malformed token") from exc
    keys = dict(get_settings().signing_keys())
    secret = keys.get(str(claims.get("kid")))
    if secret is None:
        raise TokenRefused(f"unknown signing key {claims.get('kid')!r}")
    if not hmac.compare_digest(_sign(secret, payload), signature):
        raise TokenRefused("bad signature (forged or altered)")
    if int(claims.get("exp", 0)) < utcnow().timestamp():
        raise TokenRefused("expired")
    if claims.get("action") != expected_action:
        raise TokenRefused("issued for another action (arguments, step or policy changed)")
    return Verified(str(claims["id"]), list(claims["approvers"]), str(claims["kid"]))


def create(
    session: Session,
    *,
    job_id: str,
    escalation_id: int,
    step: PlanStep,
    policy_version: str,
    approvers: list[str],
) -> Approval:
    """Store an approval of the step's exact action with its token (the caller commits)."""
    approval_id = new_id()
    action = action_hash(job_id, step, policy_version)
    token, kid, expires = issue(approval_id, action, approvers, get_settings().approval_ttl)
    row = Approval(
        id=approval_id,
        job_id=job_id,
        escalation_id=escalation_id,
        step_pk=step.id,
        action_hash=action,
        approvers=approvers,
        key_id=kid,
        token=token,
        expires_at=expires,
    )
    session.add(row)
    return row


def latest_token(session: Session, step_pk: int) -> ApprovalToken | None:
    """The newest approval of a step, as plain data for the work outside the session."""
    return latest_tokens(session, [step_pk]).get(step_pk)


def latest_tokens(session: Session, step_pks: list[int]) -> dict[int, ApprovalToken]:
    """The newest approval of each of the steps that has one, in one query."""
    latest: dict[int, ApprovalToken] = {}
    if not step_pks:
        return latest
    for row in session.scalars(
        select(Approval).where(Approval.step_pk.in_(step_pks)).order_by(Approval.created_at)
    ):
        assert row.step_pk is not None
        latest[row.step_pk] = ApprovalToken(row.id, row.token, row.used_at is not None)
    return latest


def authorize(approval: ApprovalToken | None, expected_action: str) -> Verified:
    """Verify the step's approval for this exact action; TokenRefused if it does not hold."""
    if approval is None:
        raise TokenRefused("no approval token")
    if approval.used:
        raise TokenRefused("already used")
    return verify(approval.token, expected_action)


def mark_used(session: Session, approval_id: str) -> None:
    """Spend the token (in the transaction that records the step's effect)."""
    row = session.get(Approval, approval_id)
    if row is not None and row.used_at is None:
        row.used_at = utcnow()
