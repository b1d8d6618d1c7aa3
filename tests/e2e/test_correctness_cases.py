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

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app import jobs
from app.db import session_scope
from app.models import Escalation, Job
from evals.correctness import Case, Observed, Outcome, judge, load_cases, observed_write
from tests.conftest import Proc, Sandbox, reset_process_state, wait_for
from tests.intake_helpers import zendesk_signature

pytestmark = pytest.mark.e2e

CASE_FILE = load_cases()
CASES = CASE_FILE.cases
SECRET = "correctness-zendesk-secret"
DESK_KEY = "desk-key-correctness-0001"
KEYS = f"servicedesk:requester:{DESK_KEY},ops:admin:ops-key-correctness-0002"
SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
SETTLED = jobs.TERMINAL | {jobs.ESCALATED}
WORKER_THREADS = 8
SETTLE_TIMEOUT = 240.0
OKTA_AUTH = {"Authorization": "SSWS correctness-okta-token"}
SF_AUTH = {"Authorization": "Bearer correctness-sf-token"}


def seed_worlds(sandbox: Sandbox, cases: list[Case]) -> None:
    """Every case's world, through the sandbox's control endpoints (no ledger entries)."""
    now = datetime.now(UTC)
    worlds = [c.world for c in cases]
    bodies: list[tuple[str, list[dict[str, Any]]]] = [
        ("zendesk/users", [u.model_dump() for w in worlds for u in w.zendesk_users]),
        ("charges", [c.sandbox_spec(now) for w in worlds for c in w.charges]),
        ("tickets", [t.model_dump() for w in worlds for t in w.tickets]),
        ("okta/groups", [g.model_dump() for w in worlds for g in w.okta_groups]),
        ("okta/users", [u.model_dump() for w in worlds for u in w.okta_users]),
        (
            "salesforce/records",
            [p.sandbox_spec() for w in worlds for p in w.purchase_orders]
            + [i.sandbox_spec(now) for w in worlds for i in w.invoices],
        ),
    ]
    for path, items in bodies:
        if items:
            resp = httpx.post(f"{sandbox.url}/_sandbox/{path}", json=items, timeout=30)
            assert resp.status_code == 200, f"seeding {path}: {resp.text}"


def job_for_record(record_id: str) -> str:
    """The job an Outbound Message about this record started."""
    with session_scope() as s:
        [job_id] = s.scalars(
            select(Job.id).where(Job.source == "salesforce", Job.external_id == record_id)
        ).all()
        return str(job_id)


def deliver(api: str, case: Case) -> str:
    """Send the case's event the way it arrives; returns the job it started."""
    event = case.event
    if event.kind == "zendesk_webhook":
        body = json.dumps(event.body, ensure_ascii=False).encode()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {
            "Content-Type": "application/json",
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            "X-Zendesk-Webhook-Signature": zendesk_signature(SECRET, stamp, body),
            "X-Zendesk-Webhook-Id": "01JDCORRECTNESSWEBHOOK0",
        }
        resp = httpx.post(f"{api}/webhooks/zendesk", content=body, headers=headers, timeout=30)
        assert resp.status_code == 202, f"{case.id}: {resp.status_code} {resp.text}"
        return str(resp.json()["jobs"][0]["job_id"])
    if event.kind == "salesforce_outbound_message":
        assert isinstance(event.body, str)
        resp = httpx.post(
            f"{api}/webhooks/salesforce", content=event.body.encode(), headers=SOAP, timeout=30
        )
        assert resp.status_code == 200 and "<Ack>true</Ack>" in resp.text, f"{case.id}: {resp.text}"
        return job_for_record(event.notifications()[0][1])
    headers = {"Authorization": f"Bearer {DESK_KEY}"}
    resp = httpx.post(f"{api}/v1/jobs", json=event.body, headers=headers, timeout=30)
    assert resp.status_code == 202, f"{case.id}: {resp.status_code} {resp.text}"
    return str(resp.json()["job_id"])


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


def writes_by_case(applied: list[dict[str, Any]]) -> tuple[dict[str, list[Observed]], list[str]]:
    """The applied writes of each case's world, and every write outside all of them."""
    owner = {subject: c.id for c in CASES for subject in c.subjects()}
    found: dict[str, list[Observed]] = {c.id: [] for c in CASES}
    stray = []
    for entry in applied:
        write = observed_write(entry)
        if write is not None and write.subject in owner:
            found[owner[write.subject]].append(write)
        else:
            stray.append(f"{entry['system']} {entry['method']} {entry['path']} {entry['body']}")
    return found, stray


def after_state(sandbox: Sandbox, case: Case) -> list[str]:
    """What the systems of record hold now, against the case's `expect.after`."""
    problems = []
    for user_id, status in case.expect.after.okta_user_status.items():
        resp = httpx.get(f"{sandbox.url}/api/v1/users/{user_id}", headers=OKTA_AUTH, timeout=10)
        got = resp.json().get("status")
        if got != status:
            problems.append(f"okta user {user_id} is {got}, expected {status}")
    for record_id, fields in case.expect.after.invoice_fields.items():
        url = f"{sandbox.url}/services/data/v61.0/sobjects/Invoice__c/{record_id}"
        record = httpx.get(url, headers=SF_AUTH, timeout=10).json()
        for name, value in fields.items():
            if record.get(name) != value:
                problems.append(
                    f"invoice {record_id} {name} is {record.get(name)!r}, not {value!r}"
                )
    return problems


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
    seed_worlds(sandbox, CASES)
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
    writes, stray = writes_by_case(sandbox.applied())
    wrong = []
    for case in CASES:
        problems = judge(case, found[case.id], writes[case.id])
        problems += after_state(sandbox, case)
        if problems:
            wrong.append((case, found[case.id], writes[case.id], problems))
    print(report(wrong, stray))
    assert not wrong and not stray, report(wrong, stray)
