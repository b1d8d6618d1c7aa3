"""Intake over real HTTP: a uvicorn API process, PostgreSQL, Redis, workers and the sandbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Delivery, Escalation, Job
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

SECRET = "zendesk-secret-for-tests"
ORG = "00D5e000000AbCdEAK"
KEYS = "desk:requester:desk-key,lead:reviewer:lead-key,other:requester:other-key"


@pytest.fixture
def intake_env(pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from tests.support.env import reset_process_state

    extra = {
        "OPSGATE_ZENDESK_WEBHOOK_SECRET": f"{SECRET},old-secret",
        "OPSGATE_SALESFORCE_ORG_ID": ORG,
        "OPSGATE_API_KEYS": KEYS,
    }
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    reset_process_state()
    return {**pg_env, **extra}


def zendesk_event(ticket: int, requester: int, event_id: str | None = None) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "type": "zen:event-type:ticket.created",
            "account_id": 4242,
            "id": event_id or str(uuid.uuid4()),
            "time": now,
            "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket}",
            "detail": {
                "id": str(ticket),
                "requester_id": str(requester),
                "tags": ["refund"],
                "status": "OPEN",
            },
            "event": {"current": {"status": "OPEN"}},
        }
    ).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Headers exactly as Zendesk sends them (base64 HMAC-SHA256 over timestamp + body)."""
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sig = base64.b64encode(hmac.new(secret.encode(), ts.encode() + body, hashlib.sha256).digest())
    return {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": sig.decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": ts,
        "X-Zendesk-Webhook-Id": "01F1KRFQ6BG29CNWFR60NK5FNY",
    }


def outbound_message(notifications: list[tuple[str, str]], org: str = ORG) -> bytes:
    items = "".join(
        f'<Notification><Id>{nid}</Id><sObject xsi:type="sf:Invoice__c" '
        f'xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>{rid}</sf:Id>'
        f"<sf:Name>INV-{rid[-4:]}</sf:Name><sf:Amount__c>1200.00</sf:Amount__c></sObject>"
        f"</Notification>"
        for nid, rid in notifications
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k5e000000XyZ1AAB</ActionId>"
        "<SessionId>00D5e000000AbCd!AQ0AQLIVE.SESSION.CREDENTIAL</SessionId>"
        "<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/60.0/00D5e</EnterpriseUrl>"
        "<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/60.0/00D5e</PartnerUrl>"
        f"{items}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def job_count() -> int:
    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


def settled(job_id: str) -> str | None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        return (
            job.status if job and job.status in lifecycle.TERMINAL | {lifecycle.ESCALATED} else None
        )


def test_signed_zendesk_delivery_runs_once_and_forgeries_create_nothing(
    intake_env, sandbox, start_worker, start_api
):
    start_worker()
    api = start_api()
    body = zendesk_event(4821, 101)
    # A genuine delivery, then Zendesk's retry of it, then a replay of the same signed request
    first = httpx.post(f"{api}/webhooks/zendesk", content=body, headers=signed(body))
    retry = httpx.post(f"{api}/webhooks/zendesk", content=body, headers=signed(body))
    assert first.status_code == 202 and retry.status_code == 200
    job_id = first.json()["jobs"][0]["job_id"]
    assert retry.json()["jobs"][0] == {
        "job_id": job_id,
        "created": False,
        "status_url": f"/v1/jobs/{job_id}",
    }
    # Forgeries: wrong secret, tampered body, stale timestamp, no signature
    other = zendesk_event(4822, 102)
    stale = dict(signed(other), **{"X-Zendesk-Webhook-Signature-Timestamp": "2020-01-01T00:00:00Z"})
    for headers, content in (
        (signed(other, "guess"), other),
        (signed(body), other),
        (stale, other),
        ({"Content-Type": "application/json"}, other),
    ):
        resp = httpx.post(f"{api}/webhooks/zendesk", content=content, headers=headers)
        assert resp.status_code == 401
        assert resp.headers["content-type"] == "application/problem+json"
    # The old secret still signs during a rotation
    rotated = zendesk_event(4827, 106)
    assert (
        httpx.post(
            f"{api}/webhooks/zendesk", content=rotated, headers=signed(rotated, "old-secret")
        ).status_code
        == 202
    )
    assert job_count() == 2
    assert wait_for(lambda: settled(job_id), timeout=60, what="the job") == lifecycle.COMPLETED
    assert [w["body"]["charge"] for w in sandbox.applied("stripe")].count("ch_1001") == 1
    # The raw payload is kept for audit with the job it created
    with session_scope() as s:
        delivery = s.scalar(
            select(Delivery).where(Delivery.job_ids.isnot(None), Delivery.source == "zendesk")
        )
        assert delivery is not None and json.loads(delivery.body)["detail"]["id"] in (
            "4821",
            "4827",
        )


def test_salesforce_message_is_acked_once_stored_and_never_doubled(
    intake_env, start_worker, start_api, sandbox
):
    start_worker()
    api = start_api()
    message = outbound_message(
        [("04l5e000000AAAAAA1", "a015e000000INV001A"), ("04l5e000000AAAAAA2", "a015e000000INV002A")]
    )
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    answers = [
        httpx.post(f"{api}/webhooks/salesforce", content=message, headers=headers) for _ in range(2)
    ]  # Salesforce delivers at least once
    for resp in answers:
        assert resp.status_code == 200
        assert "<Ack>true</Ack>" in resp.text and "notificationsResponse" in resp.text
    assert job_count() == 2
    with session_scope() as s:
        rows = s.scalars(select(Job).order_by(Job.external_id)).all()
        assert [(j.workflow, j.external_id) for j in rows] == [
            ("invoice_exception", "a015e000000INV001A"),
            ("invoice_exception", "a015e000000INV002A"),
        ]
        ids = [j.id for j in rows]
        # The SessionId is a live credential: it is not stored anywhere
        stored = " ".join(d.body for d in s.scalars(select(Delivery)))
        assert "LIVE.SESSION.CREDENTIAL" not in stored and "a015e000000INV001A" in stored
    # Both jobs run through the pipeline (the invoice workflow has no plan yet: a human gets it)
    for job_id in ids:
        assert wait_for(lambda j=job_id: settled(j), timeout=60, what="job") == lifecycle.ESCALATED
    with session_scope() as s:
        assert {e.reason for e in s.scalars(select(Escalation))} == {"no_model"}
    # An unknown organization is refused and creates nothing
    forged = outbound_message([("04l5e000000AAAAAA3", "a015e000000INV003A")], org="00D000000000BAD")
    resp = httpx.post(f"{api}/webhooks/salesforce", content=forged, headers=headers)
    assert resp.status_code == 403 and job_count() == 2


def test_a_hundred_concurrent_deliveries_of_one_event_make_one_job(intake_env, start_api):
    api = start_api()
    body = zendesk_event(4821, 101, event_id="01HZZCONCURRENTEVENT")
    headers = signed(body)
    with (
        httpx.Client(limits=httpx.Limits(max_connections=100)) as client,
        ThreadPoolExecutor(max_workers=100) as pool,
    ):
        codes = list(
            pool.map(
                lambda _: (
                    client.post(
                        f"{api}/webhooks/zendesk", content=body, headers=headers, timeout=60
                    ).status_code
                ),
                range(100),
            )
        )
    assert sorted(set(codes)) == [200, 202] and codes.count(202) == 1
    assert job_count() == 1
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 1


def test_jobs_api_keys_idempotency_and_visibility(intake_env, start_api):
    api = start_api()
    desk = {"Authorization": "Bearer desk-key"}
    body: dict[str, Any] = {
        "workflow": "it_request",
        "external_id": "INC-1001",
        "requester": "alice@example.com",
        "input": {"request_type": "password_reset", "target_login": "alice@example.com"},
    }
    first = httpx.post(f"{api}/v1/jobs", json=body, headers={**desk, "Idempotency-Key": "k-1"})
    again = httpx.post(f"{api}/v1/jobs", json=body, headers={**desk, "Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    job_id = first.json()["job_id"]
    assert again.json()["job_id"] == job_id and first.headers["location"] == f"/v1/jobs/{job_id}"
    changed = dict(body, input=dict(body["input"], justification="changed"))
    conflict = httpx.post(
        f"{api}/v1/jobs", json=changed, headers={**desk, "Idempotency-Key": "k-1"}
    )
    assert conflict.status_code == 409 and "different request" in conflict.json()["detail"]
    # Same external id with a different body, no key: also a conflict, nothing created
    assert httpx.post(f"{api}/v1/jobs", json=changed, headers=desk).status_code == 409
    # Another calling system may use the same external id: unique per (key, external_id)
    assert (
        httpx.post(
            f"{api}/v1/jobs", json=body, headers={"Authorization": "Bearer other-key"}
        ).status_code
        == 202
    )
    assert job_count() == 2
    # Roles and visibility
    assert (
        httpx.post(
            f"{api}/v1/jobs", json=body, headers={"Authorization": "Bearer lead-key"}
        ).status_code
        == 403
    )
    assert httpx.post(f"{api}/v1/jobs", json=body).status_code == 401
    assert httpx.get(f"{api}/v1/jobs/{job_id}", headers=desk).json()["status"] == "queued"
    assert (
        httpx.get(
            f"{api}/v1/jobs/{job_id}", headers={"Authorization": "Bearer other-key"}
        ).status_code
        == 404
    )
    assert (
        len(httpx.get(f"{api}/v1/jobs", headers={"Authorization": "Bearer lead-key"}).json()) == 2
    )
    # Input validated per workflow, with a clear detail
    bad = dict(
        body,
        external_id="INC-2",
        input={"request_type": "group_access", "target_login": "alice@example.com"},
    )
    resp = httpx.post(f"{api}/v1/jobs", json=bad, headers=desk)
    assert resp.status_code == 422 and "group_access needs group_id" in resp.json()["detail"]
    assert job_count() == 2


@pytest.mark.parametrize(
    ("content", "headers", "status", "detail"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 422, "JSON object"),
        (b'{"a": 1}', {"Content-Type": "text/plain"}, 415, "content type"),
        (b"x" * (1_048_576 + 1), {"Content-Type": "application/json"}, 413, "limit"),
    ],
)
def test_bad_zendesk_bodies_get_a_clear_4xx(
    intake_env, start_api, content, headers, status, detail
):
    api = start_api()
    sig = signed(content) if status != 415 else {}
    resp = httpx.post(f"{api}/webhooks/zendesk", content=content, headers={**sig, **headers})
    assert resp.status_code == status and detail in resp.json()["detail"]
    assert job_count() == 0


def test_xml_bomb_is_refused_quickly_without_a_job(intake_env, start_api):
    api = start_api()
    levels = "".join(f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 30))
    bomb = f'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY l0 "lol">{levels}]><b>&l29;</b>'.encode()
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    )
    for content in (bomb, external):
        resp = httpx.post(
            f"{api}/webhooks/salesforce",
            content=content,
            headers={"Content-Type": "text/xml"},
            timeout=10,
        )
        assert resp.status_code == 400 and "refused XML" in resp.json()["detail"]
    assert job_count() == 0


def test_accepted_jobs_survive_redis_being_down(
    intake_env, own_redis, sandbox, start_api, start_worker
):
    # Given an API whose Redis is the test's own server
    env = {"OPSGATE_REDIS_URL": own_redis.url}
    api = start_api(env)
    # When Redis stops, deliveries are still accepted (the job is stored with its message due)
    own_redis.stop()
    tickets = [(4821, 101), (4822, 102), (4827, 106)]
    ids = []
    for ticket, requester in tickets:
        body = zendesk_event(ticket, requester)
        resp = httpx.post(f"{api}/webhooks/zendesk", content=body, headers=signed(body), timeout=30)
        assert resp.status_code == 202
        ids.append(resp.json()["jobs"][0]["job_id"])

    def pending() -> int:
        with session_scope() as s:
            return int(
                s.scalar(
                    select(func.count()).select_from(Job).where(Job.message_due_at.is_not(None))
                )
                or 0
            )

    # (the API's after-commit publish has failed by the time its background task returns)
    wait_for(lambda: pending() == 3, timeout=30, what="the three messages to be left pending")
    # Then, once Redis is back, the relay publishes them and every job completes, once
    own_redis.start()
    start_worker("--beat", env={**env, "OPSGATE_REAPER_INTERVAL": "1", "OPSGATE_OUTBOX_GRACE": "0"})
    for job_id in ids:
        assert wait_for(lambda j=job_id: settled(j), timeout=90, what="job") == lifecycle.COMPLETED
    charges = sorted(w["body"]["charge"] for w in sandbox.applied("stripe"))
    assert charges == ["ch_1001", "ch_1002", "ch_1006"]
