"""Running a set in the case format (the golden set, or any file): seed every case's world
in the sandbox, script the model-planned cases' answers, deliver every event the way it
arrives, and judge each case from the sandbox's ledger and the systems' state.
Used by `opsgate eval`."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Job
from evals.cases import Case, Observed, Outcome, judge, observed_write
from evals.observe import JobStats
from evals.report import CaseResult, outcome_label

SECRET = "eval-zendesk-secret"
DESK_KEY = "desk-key-eval-0001"
KEYS = f"servicedesk:requester:{DESK_KEY},ops:admin:ops-key-eval-0002"
SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
OKTA_AUTH = {"Authorization": "SSWS eval-okta-token"}
SF_AUTH = {"Authorization": "Bearer eval-sf-token"}


def intake_env(salesforce_organization_id: str) -> dict[str, str]:
    """The intake's secrets the deliveries are signed and authorized with."""
    return {
        "OPSGATE_ZENDESK_WEBHOOK_SECRET": SECRET,
        "OPSGATE_SALESFORCE_ORG_ID": salesforce_organization_id,
        "OPSGATE_API_KEYS": KEYS,
    }


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's webhook signature: base64 HMAC-SHA256 of timestamp + body."""
    import base64
    import hashlib
    import hmac

    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def seed_worlds(sandbox_url: str, cases: list[Case]) -> None:
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
            resp = httpx.post(f"{sandbox_url}/_sandbox/{path}", json=items, timeout=30)
            if resp.status_code != 200:
                raise RuntimeError(f"seeding {path}: {resp.status_code} {resp.text}")


def script_models(sandbox_url: str, cases: list[Case]) -> None:
    """The answers of every model-planned case on the scripted endpoint."""
    entries = [entry for case in cases for entry in case.script()]
    if entries:
        resp = httpx.post(f"{sandbox_url}/_models/script", json={"responses": entries}, timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"scripting the model: {resp.status_code} {resp.text[:500]}")


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
            "X-Zendesk-Webhook-Id": "01JDEVALGOLDENSETWEBHOOK",
        }
        resp = httpx.post(f"{api}/webhooks/zendesk", content=body, headers=headers, timeout=30)
        _accepted(case, resp, 202)
        return str(resp.json()["jobs"][0]["job_id"])
    if event.kind == "salesforce_outbound_message":
        assert isinstance(event.body, str)
        resp = httpx.post(
            f"{api}/webhooks/salesforce", content=event.body.encode(), headers=SOAP, timeout=30
        )
        _accepted(case, resp, 200)
        if "<Ack>true</Ack>" not in resp.text:
            raise RuntimeError(f"{case.id}: the Outbound Message was not acknowledged: {resp.text}")
        return job_for_record(event.notifications()[0][1])
    headers = {"Authorization": f"Bearer {DESK_KEY}"}
    resp = httpx.post(f"{api}/v1/jobs", json=event.body, headers=headers, timeout=30)
    _accepted(case, resp, 202)
    return str(resp.json()["job_id"])


def _accepted(case: Case, resp: httpx.Response, code: int) -> None:
    if resp.status_code != code:
        raise RuntimeError(f"{case.id}: intake answered {resp.status_code}: {resp.text[:300]}")


def deliver_all(api: str, cases: list[Case]) -> dict[str, str]:
    """Every case's event at once; case id -> job id."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        started = pool.map(lambda c: deliver(api, c), cases)
        return dict(zip([c.id for c in cases], started, strict=True))


def writes_by_case(
    cases: list[Case], applied: list[dict[str, Any]]
) -> tuple[dict[str, list[Observed]], list[str]]:
    """The applied writes of each case's world, and every write outside all of them."""
    owner = {subject: c.id for c in cases for subject in c.subjects()}
    found: dict[str, list[Observed]] = {c.id: [] for c in cases}
    stray = []
    for entry in applied:
        write = observed_write(entry)
        if write is not None and write.subject in owner:
            found[owner[write.subject]].append(write)
        else:
            stray.append(f"{entry['system']} {entry['method']} {entry['path']} {entry['body']}")
    return found, stray


def after_state(sandbox_url: str, case: Case) -> list[str]:
    """What the systems of record hold now, against the case's `expect.after`."""
    problems = []
    for user_id, status in case.expect.after.okta_user_status.items():
        resp = httpx.get(f"{sandbox_url}/api/v1/users/{user_id}", headers=OKTA_AUTH, timeout=10)
        got = resp.json().get("status")
        if got != status:
            problems.append(f"okta user {user_id} is {got}, expected {status}")
    for record_id, fields in case.expect.after.invoice_fields.items():
        url = f"{sandbox_url}/services/data/v61.0/sobjects/Invoice__c/{record_id}"
        record = httpx.get(url, headers=SF_AUTH, timeout=10).json()
        for name, value in fields.items():
            if record.get(name) != value:
                problems.append(
                    f"invoice {record_id} {name} is {record.get(name)!r}, not {value!r}"
                )
    return problems


def unexpected_writes(case: Case, writes: list[Observed]) -> int:
    """Applied writes the case does not expect (an expected write applied twice counts once)."""
    from evals.cases import matches

    left = list(writes)
    for expected in case.expect.writes:
        found = [w for w in left if matches(expected, w)]
        if found:
            left.remove(found[0])
    return len(left)


def result(
    case: Case,
    outcome: Outcome,
    writes: list[Observed],
    problems: list[str],
    stats: JobStats | None,
) -> CaseResult:
    """The case's row in the report; `problems` are judge()'s and the after-state's."""
    expect = case.expect
    expected = "completed" if expect.status == "completed" else f"escalated:{expect.reason}"
    reason_ok = outcome.status == lifecycle.ESCALATED and (
        outcome.reason == expect.reason and (expect.rule is None or outcome.rule == expect.rule)
    )
    wrong = unexpected_writes(case, writes)
    stats = stats or JobStats()
    return CaseResult(
        id=case.id,
        workflow=case.workflow,
        expected=expected,
        expected_rule=expect.rule,
        actual=outcome_label(outcome.status, outcome.reason),
        correct=not problems,
        reason=outcome.reason,
        rule=outcome.rule,
        reason_ok=reason_ok,
        writes_ok=wrong == 0 and not any("applied" in p for p in problems),
        wrong_writes=wrong,
        problems=problems,
        latency_s=stats.latency_s,
        retries=stats.retries,
        model_answers=stats.model_answers,
        model_valid=stats.model_valid,
        cost_usd=stats.cost_usd,
    )


def judge_all(
    sandbox_url: str,
    cases: list[Case],
    found: dict[str, Outcome],
    applied: list[dict[str, Any]],
    stats: dict[str, JobStats],
    job_ids: dict[str, str],
) -> tuple[list[CaseResult], list[str]]:
    """Every case's result, and the applied writes outside every case's world."""
    writes, stray = writes_by_case(cases, applied)
    results = []
    for case in cases:
        problems = judge(case, found[case.id], writes[case.id])
        problems += after_state(sandbox_url, case)
        results.append(
            result(case, found[case.id], writes[case.id], problems, stats.get(job_ids[case.id]))
        )
    return results, stray
