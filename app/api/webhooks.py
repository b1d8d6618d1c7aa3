"""Inbound webhooks: Zendesk (signed JSON) and Salesforce Outbound Messages (SOAP)."""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app.api.body import JSON_TYPES, XML_TYPES, media_type, parse_json, read_body
from app.errors import Forbidden, InputError
from app.intake import salesforce, submissions, zendesk
from app.jobs.sender import sender
from app.settings import get_settings
from app.workflows import registry

router = APIRouter()

# Headers kept with a delivery for audit; never an Authorization header.
_KEEP = (
    "user-agent",
    "x-zendesk-account-id",
    "x-zendesk-webhook-id",
    "x-zendesk-webhook-invocation-id",
    "x-zendesk-webhook-signature-timestamp",
)


def audit_headers(request: Request) -> dict[str, str]:
    """The request headers kept with a delivery (never credentials or signatures)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return {k: headers[k] for k in _KEEP if k in headers}


def publish_after(results: list[submissions.Accepted], background: BackgroundTasks) -> None:
    """Send the committed jobs' first messages once the answer is on its way.

    The process's sender publishes them with other accepts' messages in one Redis round
    trip; awaiting it on the event loop costs no threadpool hand-off (app.jobs.sender).
    """
    messages = [msg for done in results for msg in done.messages]
    if messages:
        background.add_task(sender().send, messages)


def _answer(results: list[submissions.Accepted], background: BackgroundTasks) -> dict[str, Any]:
    publish_after(results, background)
    return {
        "jobs": [
            {"job_id": d.job_id, "created": d.created, "status_url": f"/v1/jobs/{d.job_id}"}
            for d in results
        ]
    }


@router.post("/webhooks/zendesk", status_code=202)
async def zendesk_webhook(request: Request, background: BackgroundTasks) -> JSONResponse:
    """A Zendesk event-subscription or trigger webhook, verified before it is parsed."""
    settings = get_settings()
    body = await read_body(request, JSON_TYPES)
    headers = {k.lower(): v for k, v in request.headers.items()}
    zendesk.verify(settings.zendesk_secrets(), headers, body)
    payload = parse_json(body)
    wanted = zendesk.to_submission(payload, headers, settings.zendesk_tag_set())
    if isinstance(wanted, str):
        return JSONResponse({"jobs": [], "ignored": wanted}, status_code=200)
    sub = submissions.parse_submission(wanted.model_dump())
    results = await run_in_threadpool(
        submissions.accept_delivery,
        [sub],
        submitted_by="webhook:zendesk",
        source="zendesk",
        content_type=media_type(request),
        headers=audit_headers(request),
        body=body.decode("utf-8", "replace"),
    )
    answer = _answer(results, background)
    return JSONResponse(answer, status_code=202 if results[0].created else 200)


def _check_ip(request: Request, allowed: str) -> None:
    if not allowed.strip():
        return
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise Forbidden(f"caller address {host!r} is not on the Salesforce allowlist") from None
    networks = [
        ipaddress.ip_network(n.strip(), strict=False) for n in allowed.split(",") if n.strip()
    ]
    if not any(address in net for net in networks):
        raise Forbidden(f"caller address {host} is not on the Salesforce allowlist")


@router.post("/webhooks/salesforce")
async def salesforce_webhook(request: Request, background: BackgroundTasks) -> Response:
    """A Salesforce Outbound Message: acknowledged only once every notification is stored."""
    settings = get_settings()
    _check_ip(request, settings.salesforce_allowed_ips)
    body = await read_body(request, XML_TYPES)
    message = salesforce.parse(body)
    if not salesforce.same_org(settings.salesforce_org_id or "", message.organization_id):
        raise Forbidden(
            f"organization {message.organization_id} is not configured (OPSGATE_SALESFORCE_ORG_ID)"
        )
    subs, org = [], message.organization_id[:15]
    for note in message.notifications:
        started = registry.for_salesforce(note.sobject_type)
        if started is None:
            raise InputError(
                f"notification {note.id}: sObject {note.sobject_type} starts no "
                f"workflow (known: {', '.join(registry.salesforce_sobjects())})"
            )
        workflow = started.name
        subs.append(
            submissions.parse_submission(
                {
                    "workflow": workflow,
                    "source": "salesforce",
                    "external_id": note.record_id,
                    "delivery_id": f"notification:{note.id}",
                    "requester": f"salesforce:{org}/action:{message.action_id}",
                    "input": {
                        "invoice_id": note.record_id,
                        "sobject_type": note.sobject_type,
                        "notification_id": note.id,
                    },
                }
            )
        )
    results = await run_in_threadpool(
        submissions.accept_delivery,
        subs,
        submitted_by="webhook:salesforce",
        source="salesforce",
        content_type=media_type(request),
        headers=audit_headers(request),
        body=salesforce.without_session(body),
    )
    _answer(results, background)
    return Response(salesforce.ACK, media_type="text/xml; charset=utf-8")
