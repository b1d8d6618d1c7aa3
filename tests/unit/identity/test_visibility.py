"""app/identity/visibility.py: the one rule of which jobs a caller sees, in Python and SQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.identity.apikeys import Principal
from app.identity.visibility import may_see, visible_jobs
from app.models import Job

JOBS = [
    ("support_refund", "key:desk"),
    ("support_refund", "key:crm"),
    ("invoice_exception", "key:crm"),
    ("it_request", "key:desk"),
]

PRINCIPALS = [
    Principal("ops", "admin"),
    Principal("lead", "reviewer"),
    Principal("clerk", "reviewer", frozenset({"invoice_exception"})),
    Principal("lead2", "reviewer", frozenset({"support_refund", "it_request"})),
    Principal("desk", "requester"),
    Principal("desk", "requester", frozenset({"it_request"})),
    Principal("crm", "admin", frozenset({"invoice_exception"})),
    Principal("none", "reviewer", frozenset()),
]


@pytest.fixture
def jobs(sqlite_db: Path) -> None:
    with session_scope() as s:
        for i, (workflow, submitted_by) in enumerate(JOBS):
            s.add(
                Job(
                    id=f"job-{i}",
                    source="api",
                    external_id=str(i),
                    intake_key=f"api:{i}",
                    workflow=workflow,
                    requester="someone",
                    submitted_by=submitted_by,
                    input={},
                    status="received",
                )
            )
        s.commit()


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: f"{p.name}-{p.role}")
def test_sql_conditions_and_the_python_check_agree(jobs: None, principal: Principal) -> None:
    with session_scope() as s:
        listed = set(s.scalars(select(Job.id).where(*visible_jobs(principal))))
        checked = {j.id for j in s.scalars(select(Job)) if may_see(principal, j)}

    assert listed == checked


def test_scope_and_ownership_combine(jobs: None) -> None:
    with session_scope() as s:
        seen = {
            p: sorted(s.scalars(select(Job.workflow).where(*visible_jobs(p)))) for p in PRINCIPALS
        }

    assert seen[PRINCIPALS[0]] == sorted(w for w, _ in JOBS)
    assert seen[PRINCIPALS[2]] == ["invoice_exception"]
    assert seen[PRINCIPALS[3]] == ["it_request", "support_refund", "support_refund"]
    # A requester sees what it submitted, and a scoped one only in its workflows.
    assert seen[PRINCIPALS[4]] == ["it_request", "support_refund"]
    assert seen[PRINCIPALS[5]] == ["it_request"]
    assert seen[PRINCIPALS[7]] == []
