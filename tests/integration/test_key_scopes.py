"""Workflow scopes of API keys over the real /v1 API (in-process, on PostgreSQL and Redis):
a scoped key sees and acts on its workflows' jobs and escalations only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.human import escalation
from app.identity import apikeys
from app.intake import submissions
from app.models import Job
from tests.support.env import reset_process_state

pytestmark = pytest.mark.integration

KEYS = (
    "clerk:reviewer/invoice_exception:clerk-key-0001,"
    "lead:reviewer/support_refund+it_request:lead-key-0002,"
    "boss:reviewer:boss-key-0003,"
    "desk:requester/support_refund:desk-key-0004,"
    "itops:admin/it_request:itops-key-0005,"
    "root:admin:root-key-0006"
)
INPUTS: dict[str, dict[str, Any]] = {
    "support_refund": {"ticket_id": 4821},
    "invoice_exception": {"invoice_id": "a0B5e000000AbCdEAK"},
    "it_request": {"request_type": "password_reset", "target_login": "alice@example.com"},
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CLERK, LEAD, BOSS = bearer("clerk-key-0001"), bearer("lead-key-0002"), bearer("boss-key-0003")
DESK, ITOPS, ROOT = bearer("desk-key-0004"), bearer("itops-key-0005"), bearer("root-key-0006")


@pytest.fixture
def api(pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from app.api.main import create_app

    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    reset_process_state()
    saved_logging = structlog.get_config()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client
    structlog.configure(**saved_logging)


def escalated_job(workflow: str) -> tuple[str, int]:
    """A job of the workflow waiting in the human queue: (job id, escalation id)."""
    job_id, _ = submissions.submit(
        {
            "workflow": workflow,
            "source": "api",
            "external_id": f"{workflow}-1",
            "delivery_id": f"scopes:{workflow}",
            "requester": "someone@example.com",
            "input": INPUTS[workflow],
        },
        submitted_by="test",
    )
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        esc = escalation.escalate(
            s,
            job,
            reason="planner_requested",
            detail="a human should look",
            evidence={},
            stage="plan",
            actor="test",
        )
        s.commit()
        return job_id, esc.id


@pytest.fixture
def queue(api: TestClient) -> dict[str, tuple[str, int]]:
    """One escalated job per workflow, by workflow."""
    return {w: escalated_job(w) for w in INPUTS}


def workflows_of(rows: list[dict[str, Any]], queue: dict[str, tuple[str, int]]) -> list[str]:
    by_job = {job_id: w for w, (job_id, _) in queue.items()}
    return sorted(by_job[r.get("job_id") or r["id"]] for r in rows)


def assert_problem(resp: Any, status: int, *words: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert all(w in resp.json()["detail"] for w in words), resp.json()


def test_a_scoped_reviewer_lists_only_its_workflows_escalations(
    api: TestClient, queue: dict[str, tuple[str, int]]
) -> None:
    seen = {
        name: workflows_of(api.get("/v1/escalations", headers=h).json(), queue)
        for name, h in (("clerk", CLERK), ("lead", LEAD), ("boss", BOSS), ("itops", ITOPS))
    }

    assert seen == {
        "clerk": ["invoice_exception"],
        "lead": ["it_request", "support_refund"],
        "boss": ["invoice_exception", "it_request", "support_refund"],
        "itops": ["it_request"],
    }
    assert workflows_of(api.get("/v1/escalations?status=all", headers=CLERK).json(), queue) == [
        "invoice_exception"
    ]


def test_a_scoped_reviewer_cannot_claim_or_decide_another_workflows_escalation(
    api: TestClient, queue: dict[str, tuple[str, int]]
) -> None:
    _, refund_esc = queue["support_refund"]
    _, invoice_esc = queue["invoice_exception"]
    reject = {"decision": "reject", "reason_code": "other", "note": "not ours"}

    claim = api.post(f"/v1/escalations/{refund_esc}/claim", headers=CLERK)
    decision = api.post(f"/v1/escalations/{refund_esc}/decision", json=reject, headers=CLERK)

    # The same answer as for an escalation that does not exist.
    assert_problem(claim, 404, f"no escalation {refund_esc}")
    assert_problem(decision, 404, f"no escalation {refund_esc}")
    assert api.post("/v1/escalations/999999/claim", headers=CLERK).json()["detail"] == (
        "no escalation 999999"
    )
    # Its own workflow's escalation it works as before.
    assert api.post(f"/v1/escalations/{invoice_esc}/claim", headers=CLERK).status_code == 200
    done = api.post(f"/v1/escalations/{invoice_esc}/decision", json=reject, headers=CLERK)
    assert done.status_code == 200, done.text
    assert done.json()["job_status"] == "rejected"
    # The refund escalation is untouched and an unscoped reviewer still sees it open.
    assert [e["id"] for e in api.get("/v1/escalations", headers=BOSS).json()] == sorted(
        esc for w, (_, esc) in queue.items() if w != "invoice_exception"
    )


def test_a_job_outside_the_scope_is_not_found_and_not_listed(
    api: TestClient, queue: dict[str, tuple[str, int]]
) -> None:
    refund_job, _ = queue["support_refund"]
    invoice_job, _ = queue["invoice_exception"]

    assert_problem(api.get(f"/v1/jobs/{refund_job}", headers=CLERK), 404, f"no job {refund_job}")
    assert api.get(f"/v1/jobs/{invoice_job}", headers=CLERK).json()["workflow"] == (
        "invoice_exception"
    )
    assert workflows_of(api.get("/v1/jobs", headers=CLERK).json(), queue) == ["invoice_exception"]
    assert api.get("/v1/jobs?workflow=support_refund", headers=CLERK).json() == []
    assert len(api.get("/v1/jobs", headers=BOSS).json()) == 3


def test_a_scoped_admin_cannot_operate_on_another_workflows_job(
    api: TestClient, queue: dict[str, tuple[str, int]]
) -> None:
    refund_job, _ = queue["support_refund"]
    it_job, _ = queue["it_request"]
    body = {"reason": "test"}

    assert_problem(api.post(f"/v1/jobs/{refund_job}/cancel", json=body, headers=ITOPS), 404)
    cancelled = api.post(f"/v1/jobs/{it_job}/cancel", json=body, headers=ITOPS)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # The kill switch is not scoped: a scoped admin reads (and flips) the fleet's switches.
    assert api.get("/v1/killswitch", headers=ITOPS).status_code == 200
    with session_scope() as s:
        refund = s.get(Job, refund_job)
        assert refund is not None and refund.status == "escalated"


def job_body(workflow: str, external_id: str = "ext-1", **changes: Any) -> dict[str, Any]:
    return {
        "workflow": workflow,
        "external_id": external_id,
        "requester": "zendesk-user:103",
        "input": INPUTS[workflow],
        **changes,
    }


def test_a_scoped_requester_cannot_submit_another_workflow(api: TestClient) -> None:
    refused = api.post("/v1/jobs", json=job_body("invoice_exception"), headers=DESK)
    # Refused for the scope before the input is looked at.
    bad_input = api.post("/v1/jobs", json=job_body("it_request", input={}), headers=DESK)
    accepted = api.post("/v1/jobs", json=job_body("support_refund"), headers=DESK)

    assert_problem(refused, 403, "key 'desk'", "invoice_exception", "its scope is support_refund")
    assert_problem(bad_input, 403, "it_request")
    assert accepted.status_code == 202, accepted.text
    with session_scope() as s:
        assert [j.workflow for j in s.query(Job)] == ["support_refund"]
    # The requester still sees only what it submitted.
    assert [j["workflow"] for j in api.get("/v1/jobs", headers=DESK).json()] == ["support_refund"]


def test_an_unscoped_key_behaves_as_before(api: TestClient) -> None:
    for workflow in INPUTS:
        resp = api.post("/v1/jobs", json=job_body(workflow, f"root-{workflow}"), headers=ROOT)
        assert resp.status_code == 202, resp.text
    assert len(api.get("/v1/jobs", headers=ROOT).json()) == 3


def test_a_stored_key_with_a_scope_behaves_the_same_and_revoked_is_401(
    api: TestClient, queue: dict[str, tuple[str, int]]
) -> None:
    with session_scope() as s:
        key = apikeys.create(
            s, "finance", "reviewer", created_by="test", workflows=["invoice_exception"]
        )
        s.commit()
    finance = bearer(key)
    refund_job, refund_esc = queue["support_refund"]

    listed = api.get("/v1/escalations", headers=finance).json()
    assert workflows_of(listed, queue) == ["invoice_exception"]
    assert_problem(api.get(f"/v1/jobs/{refund_job}", headers=finance), 404)
    assert_problem(api.post(f"/v1/escalations/{refund_esc}/claim", headers=finance), 404)

    with session_scope() as s:
        apikeys.revoke(s, "finance")
        s.commit()
    assert_problem(api.get("/v1/escalations", headers=finance), 401, "revoked")
