"""Tampering with the audit trail as someone with the database would (tests of `audit
verify`), and taking a checkpoint."""

from __future__ import annotations

from sqlalchemy import text

from app.audit import checkpoints
from app.core.db import session_scope

# The job of the `chain` fixture (tests/unit/audit/conftest.py).
JOB = "00000000-0000-4000-8000-000000000001"


def tamper(statement: str, **params: object) -> None:
    """Tamper as someone with the database would: the append-only triggers off first."""
    with session_scope() as s:
        if s.get_bind().dialect.name == "postgresql":
            # A superuser's session switches triggers off for itself, leaving them in place.
            s.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for table in ("audit_events", "audit_checkpoints"):
                for action in ("update", "delete"):
                    s.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
        s.execute(text(statement), params)
        s.commit()


def checkpoint() -> None:
    """Anchor every chain's head in a new checkpoint."""
    with session_scope() as s:
        assert checkpoints.take(s) is not None
        s.commit()
