"""Fixtures of the audit unit tests: a committed chain of four events for one job."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.audit import chain as audit
from app.core.db import session_scope
from tests.support.audit import JOB


@pytest.fixture
def chain(sqlite_db: Path) -> str:
    """Four committed events for one job."""
    with session_scope() as s:
        audit.append(s, JOB, "intake", "api:alice", {"source": "api", "input_hash": "ab" * 32})
        audit.append(s, JOB, "transition", "agent", {"from": "queued", "to": "planned"})
        audit.append(
            s,
            JOB,
            "policy",
            "agent",
            {"rule": "autonomy_grant", "amount": 2500, "ratio": 0.93, "tags": ["a", "é"]},
        )
        audit.append(s, JOB, "transition", "agent", {"from": "planned", "to": "ready"})
        s.commit()
    return JOB
