"""The adversarial set end to end: every scripted model output in evals/adversarial/cases.yaml
runs through a real worker, PostgreSQL, Redis, the sandbox and the scripted OpenAI-compatible
server. Nothing may be written, and each job's escalation must name the first gate that
stopped it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from app import breaker, intake, jobs
from app.db import session_scope
from app.models import Escalation, Job
from evals.adversarial import WORKFLOWS, Case, load_cases
from tests.conftest import ModelServer, Sandbox, models_config_dir, reset_process_state, wait_for

pytestmark = pytest.mark.e2e

CASES = load_cases()
SETTLED = jobs.TERMINAL | {jobs.ESCALATED}
# Schema cases make up to six model calls each (three per tier); threads keep them overlapping.
WORKER_THREADS = 16
SETTLE_TIMEOUT = 600.0


def adversarial_config(tmp_path: Path) -> Path:
    """config/ with every workflow planned by the model, no model judge in the soft check
    (the deterministic scorer decides, so expectations are exact) and room in the budgets."""
    config = models_config_dir(
        tmp_path,
        router={"skip_rules": list(WORKFLOWS)},
        budgets={"daily_usd": {"default": 1000.0}},
    )
    path = config / "models.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("soft_check", None)
    path.write_text(yaml.safe_dump(data))
    return config


def outcomes(job_ids: dict[str, str]) -> dict[str, dict[str, Any]] | None:
    """Each case's job status and latest escalation, once every job has settled."""
    found: dict[str, dict[str, Any]] = {}
    with session_scope() as s:
        ids = list(job_ids.values())
        statuses = {
            job_id: status
            for job_id, status in s.execute(select(Job.id, Job.status).where(Job.id.in_(ids)))
        }
        if len(statuses) < len(job_ids) or not set(statuses.values()) <= SETTLED:
            return None
        escalations = {
            e.job_id: e
            for e in s.scalars(
                select(Escalation).where(Escalation.job_id.in_(ids)).order_by(Escalation.id)
            )
        }
        for case_id, job_id in job_ids.items():
            esc = escalations.get(job_id)
            found[case_id] = {
                "status": statuses[job_id],
                "reason": esc.reason if esc else None,
                "rule": (esc.evidence or {}).get("rule") if esc else None,
                "detail": esc.detail if esc else "",
            }
    return found


def mismatch(case: Case, got: dict[str, Any]) -> bool:
    if got["status"] != jobs.ESCALATED or got["reason"] != case.expect.reason:
        return True
    return case.expect.rule is not None and got["rule"] != case.expect.rule


def report(rows: list[tuple[Case, dict[str, Any]]], applied: list[dict[str, Any]]) -> str:
    """One table of every case that went wrong, and every write that happened."""
    lines = [f"{len(rows)} of {len(CASES)} adversarial cases did not end as expected:"]
    lines.append(f"{'case':<8} {'expected':<36} {'got':<44} detail")
    for case, got in rows:
        expected = f"{case.expect.reason}/{case.expect.rule or '*'}"
        actual = f"{got['status']}: {got['reason'] or '-'}/{got['rule'] or '-'}"
        lines.append(f"{case.id:<8} {expected:<36} {actual:<44} {got['detail'][:160]}")
        if case.finding:
            lines.append(f"{'':<8} known finding: {case.finding[:200]}")
    if applied:
        lines.append(f"{len(applied)} applied write(s) in the sandbox ledger:")
        lines += [
            f"  {w.get('system')} {w.get('method')} {w.get('path')} {w.get('body')}"
            for w in applied
        ]
    return "\n".join(lines)


@pytest.mark.timeout(SETTLE_TIMEOUT + 180)
def test_every_adversarial_plan_is_stopped_by_its_first_gate_and_writes_nothing(
    pg_env: dict[str, str],
    model_server: ModelServer,
    sandbox: Sandbox,
    start_worker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the worker's config (set before it starts), closed model breakers, every case's
    # ticket in the sandbox and every case's answer scripted on its token
    monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(adversarial_config(tmp_path)))
    reset_process_state()
    for model in ("gpt-4o-mini", "gpt-4o"):
        breaker.reset(f"model:{model}")
    sandbox.add_tickets(*(c.sandbox_ticket() for c in CASES if c.ticket is not None))
    model_server.script(*(c.script_entry() for c in CASES))
    start_worker("--concurrency", str(WORKER_THREADS))

    # When every case is submitted at once
    started = time.monotonic()
    job_ids = {c.id: intake.submit(c.submission(), submitted_by="test")[0] for c in CASES}
    found = wait_for(
        lambda: outcomes(job_ids),
        timeout=SETTLE_TIMEOUT,
        interval=1.0,
        what=f"{len(job_ids)} adversarial jobs to settle",
    )
    print(f"{len(CASES)} adversarial cases settled in {time.monotonic() - started:.1f}s")

    # Then nothing was written, and each job escalated with its first gate's reason
    applied = sandbox.applied()
    wrong = [(c, found[c.id]) for c in CASES if mismatch(c, found[c.id])]
    assert not wrong and not applied, report(wrong, applied)
