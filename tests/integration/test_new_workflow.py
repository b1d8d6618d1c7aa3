"""A new workflow is one module, its policy entry and its policy document: the throwaway
`ticket_triage` (tests/integration/ticket_triage_workflow.py) runs end to end through a real
worker, real PostgreSQL and Redis and the sandbox, with every gate and verifier on."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from app.audit import verify
from app.core.db import session_scope
from app.errors import InputError
from app.intake import submissions
from app.jobs import lifecycle
from app.models import Job, PlanStep
from app.settings import PROJECT_ROOT, get_settings
from tests.support.env import reset_process_state
from tests.support.processes import wait_for
from tests.support.sandbox import Sandbox
from tools.zendesk import client as zendesk_api

pytestmark = pytest.mark.integration

MODULE = "tests.integration.ticket_triage_workflow"
# What a workflow's policy says (config/policy.yaml): its rollout, who may submit, its tools.
POLICY_ENTRY = {
    "stage": "live",
    "requester_roles": ["requester", "admin"],
    "allowed_tools": ["zendesk.get_ticket", "zendesk.add_comment"],
}
POLICY_DOCUMENT = """# Ticket triage

## Notes
Every open ticket gets an internal triage note that names its subject. [rule: ticket_is_the_jobs]
Triage notes are internal: a customer never sees them. [rule: ticket_open_for_comments]
"""


@pytest.fixture
def triage_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The repository's config/ plus the new workflow's policy entry and document, and the
    module named in OPSGATE_WORKFLOW_MODULES: what an operator adds for a new workflow."""
    folder = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", folder)
    data = yaml.safe_load((folder / "policy.yaml").read_text())
    data["workflows"]["ticket_triage"] = POLICY_ENTRY
    (folder / "policy.yaml").write_text(yaml.safe_dump(data))
    (folder / "policies" / "triage.md").write_text(POLICY_DOCUMENT)
    env = {"OPSGATE_CONFIG_DIR": str(folder), "OPSGATE_WORKFLOW_MODULES": MODULE}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_process_state()
    return env


def submission(ticket: int, delivery: str, **extra: Any) -> dict[str, Any]:
    return {
        "workflow": "ticket_triage",
        "source": "api",
        "external_id": f"triage-{ticket}",
        "delivery_id": delivery,
        "requester": "zendesk-user:101",
        "input": {"ticket_id": ticket, **extra},
    }


def test_a_workflow_from_one_module_runs_end_to_end(
    pg_env: dict[str, str], triage_config: dict[str, str], sandbox: Sandbox, start_worker: Any
) -> None:
    # Given a worker that loads the new workflow's module (as every process of a fleet must)
    start_worker()
    # When a job of the new workflow is submitted
    job_id, created = submissions.submit(submission(4821, "triage-1"), submitted_by="test")
    assert created
    # Then it runs every stage and completes
    status = wait_for(
        lambda: (s := _status(job_id)) in lifecycle.TERMINAL | {lifecycle.ESCALATED} and s,
        timeout=90,
        what=f"job {job_id} to settle",
    )
    assert status == lifecycle.COMPLETED, _escalation(job_id)
    # And its one write reached the sandbox once, as the note its module planned
    [note] = sandbox.applied("zendesk")
    assert "4821" in str(note)
    comments = zendesk_api.list_comments(4821)
    assert [c["body"] for c in comments if "Triage:" in c["body"]] == [
        f"Triage: Refund for duplicate charge\n\n[opsgate:opsgate-{job_id}-s1]"
    ]
    with session_scope() as s:
        [step] = s.scalars(select(PlanStep).where(PlanStep.job_id == job_id)).all()
        assert (step.tool, step.args["public"]) == ("zendesk.add_comment", False)
        assert step.args["body"] == "Triage: Refund for duplicate charge"
        # And the job's audit chain holds
        assert verify.one_job(s, job_id) == []


def test_its_input_model_guards_intake(triage_config: dict[str, str]) -> None:
    with pytest.raises(InputError, match="invalid input for ticket_triage: ticket_id"):
        submissions.parse_submission(submission(0, "triage-bad"))
    with pytest.raises(InputError, match="note: Extra inputs are not permitted"):
        submissions.parse_submission(submission(4821, "triage-extra", note="x"))


def _status(job_id: str) -> str:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.status


def _escalation(job_id: str) -> str:
    from app.models import Escalation

    with session_scope() as s:
        rows = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).all()
        return "; ".join(f"{e.reason}: {e.detail} {e.evidence}" for e in rows)
