"""The correctness set end to end: every case of evals/correctness/cases.yaml has its world
seeded in the sandbox, its event delivered the way it arrives (a signed Zendesk webhook to
`POST /webhooks/zendesk`, a Salesforce Outbound Message to `POST /webhooks/salesforce`, a
`POST /v1/jobs` body with a service desk's key) to a real API process, and is run by a real
worker against PostgreSQL, Redis and the sandbox over HTTP, with no model configured (the
rules tier plans). All cases run at once.

Each case must end as it says: completed with exactly its writes (each applied once in the
sandbox ledger), or escalated with its reason, rule and evidence; and what it says must never
happen does not. No write may touch anything outside the cases' worlds. One table lists every
case that went wrong."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app import jobs
from app.db import session_scope
from app.models import Escalation, Job
from evals.correctness import Case, Observed, Outcome, judge, load_cases
from evals.correctness_run import (
    KEYS,
    SECRET,
    after_state,
    deliver,
    seed_worlds,
    writes_by_case,
)
from tests.conftest import Proc, Sandbox, reset_process_state, wait_for

pytestmark = pytest.mark.e2e

CASE_FILE = load_cases()
CASES = CASE_FILE.cases
SETTLED = jobs.TERMINAL | {jobs.ESCALATED}
WORKER_THREADS = 8
SETTLE_TIMEOUT = 240.0


def outcomes(job_ids: dict[str, str]) -> dict[str, Outcome] | None:
    """Each case's outcome, once every job has settled."""
    with session_scope() as s:
        ids = list(job_ids.values())
        statuses = dict(s.execute(select(Job.id, Job.status).where(Job.id.in_(ids))).all())
        if len(statuses) < len(ids) or not set(statuses.values()) <= SETTLED:
            return None
        latest = {
            e.job_id: e
            for e in s.scalars(
                select(Escalation).where(Escalation.job_id.in_(ids)).order_by(Escalation.id)
            )
        }
        found = {}
        for case_id, job_id in job_ids.items():
            esc = latest.get(job_id) if statuses[job_id] == jobs.ESCALATED else None
            evidence = dict(esc.evidence or {}) if esc else None
            found[case_id] = Outcome(
                status=str(statuses[job_id]),
                reason=esc.reason if esc else None,
                rule=(evidence or {}).get("rule") if esc else None,
                detail=esc.detail if esc else "",
                evidence=evidence,
            )
        return found


def expected_text(case: Case) -> str:
    expect = case.expect
    if expect.status == "completed":
        return "completed: " + ", ".join(w.tool for w in expect.writes)
    return f"escalated: {expect.reason}/{expect.rule or '*'}"


def got_text(outcome: Outcome, writes: list[Observed]) -> str:
    if outcome.status != jobs.ESCALATED:
        return f"{outcome.status}: " + (", ".join(w.tool for w in writes) or "no writes")
    return f"escalated: {outcome.reason}/{outcome.rule or '-'}"


def report(rows: list[tuple[Case, Outcome, list[Observed], list[str]]], stray: list[str]) -> str:
    """One table of every case that went wrong, and every write outside the cases' worlds."""
    lines = [f"{len(rows)} of {len(CASES)} correctness cases did not end as expected:"]
    lines.append(f"{'case':<8} {'class':<23} {'expected':<48} {'got':<48} problems")
    for case, outcome, writes, problems in rows:
        lines.append(
            f"{case.id:<8} {case.class_:<23} {expected_text(case):<48} "
            f"{got_text(outcome, writes):<48} {'; '.join(problems)[:300]}"
        )
        if outcome.detail:
            lines.append(f"{'':<8} detail: {outcome.detail[:200]}")
    if stray:
        lines.append(f"{len(stray)} applied write(s) outside every case's world:")
        lines += [f"  {w}" for w in stray]
    return "\n".join(lines)


@pytest.mark.timeout(SETTLE_TIMEOUT + 180)
def test_every_correctness_case_ends_as_the_issue_intends(
    pg_env: dict[str, str],
    sandbox: Sandbox,
    start_worker: Callable[..., Proc],
    start_api: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given every case's world in the sandbox, no model configured, and the intake's secrets
    monkeypatch.setenv("OPSGATE_ZENDESK_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("OPSGATE_SALESFORCE_ORG_ID", CASE_FILE.salesforce_organization_id)
    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    reset_process_state()
    seed_worlds(sandbox.url, CASES)
    start_worker("--concurrency", str(WORKER_THREADS))
    api = start_api()

    # When every case's event arrives at once
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        started_jobs = pool.map(lambda c: deliver(api, c), CASES)
        job_ids = dict(zip([c.id for c in CASES], started_jobs, strict=True))
    found: dict[str, Outcome] = wait_for(
        lambda: outcomes(job_ids),
        timeout=SETTLE_TIMEOUT,
        interval=1.0,
        what=f"{len(job_ids)} correctness jobs to settle",
    )
    print(f"{len(CASES)} correctness cases settled in {time.monotonic() - started:.1f}s")

    # Then each case ended as it says, with exactly its writes, and nothing else was written
    writes, stray = writes_by_case(CASES, sandbox.applied())
    wrong = []
    for case in CASES:
        problems = judge(case, found[case.id], writes[case.id])
        problems += after_state(sandbox.url, case)
        if problems:
            wrong.append((case, found[case.id], writes[case.id], problems))
    print(report(wrong, stray))
    assert not wrong and not stray, report(wrong, stray)
