"""Salesforce Outbound Messages: safe SOAP parsing, and the acknowledgement.

The envelope is parsed with defusedxml (no DTDs, no entities, no external references), so an
XML bomb or an external entity is refused before it is expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from app.errors import InputError, MalformedBody
from app.salesforce_ids import canonical_id

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
MAX_NOTIFICATIONS = 100
_SESSION = re.compile(rb"(<(?:[\w.-]+:)?SessionId\b[^>]*>)(.*?)(</(?:[\w.-]+:)?SessionId>)", re.S)

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)


@dataclass(frozen=True)
class Notification:
    """One notification: its id, and the record it is about."""

    id: str
    sobject_type: str
    record_id: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    """A parsed message. The SessionId (a live credential) is deliberately not kept."""

    organization_id: str
    action_id: str
    enterprise_url: str
    notifications: list[Notification]


def _text(parent: SafeET.Element, tag: str, *, required: bool = True) -> str:
    node = parent.find(f"{{{OUTBOUND}}}{tag}")
    value = (node.text or "").strip() if node is not None else ""
    if required and not value:
        raise InputError(f"outbound message has no {tag}")
    return value


def parse(body: bytes) -> OutboundMessage:
    """Parse an Outbound Message envelope, or raise InputError saying what is wrong."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MalformedBody(
            f"refused XML: {exc.__class__.__name__} (DTDs and entities are not allowed)"
        ) from exc
    except (SafeET.ParseError, LookupError, ValueError, UnicodeError) as exc:
        # ParseError, or an XML declaration naming an encoding the parser cannot read.
        raise MalformedBody(f"malformed XML: {str(exc)[:200]}") from exc
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise InputError("not a SOAP envelope")
    notifications = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notifications")
    if notifications is None:
        raise InputError("SOAP body holds no outbound `notifications`")
    items = notifications.findall(f"{{{OUTBOUND}}}Notification")
    if not items:
        raise InputError("outbound message has no Notification")
    if len(items) > MAX_NOTIFICATIONS:
        raise InputError(f"outbound message has {len(items)} notifications; at most 100 allowed")
    return OutboundMessage(
        organization_id=_text(notifications, "OrganizationId"),
        action_id=_text(notifications, "ActionId"),
        enterprise_url=_text(notifications, "EnterpriseUrl", required=False),
        notifications=[_notification(n) for n in items],
    )


def _notification(node: SafeET.Element) -> Notification:
    notification_id = _text(node, "Id")
    sobject = node.find(f"{{{OUTBOUND}}}sObject")
    if sobject is None:
        raise InputError(f"notification {notification_id} has no sObject")
    sobject_type = sobject.get(XSI_TYPE, "").split(":")[-1]
    fields = {child.tag.split("}")[-1]: (child.text or "").strip() for child in sobject}
    record_id = fields.get("Id", "")
    if not sobject_type or not record_id:
        raise InputError(f"notification {notification_id} has no sObject type or Id")
    return Notification(notification_id, sobject_type, record_id, fields)


def without_session(body: bytes) -> str:
    """The envelope with the SessionId's value removed, safe to keep for audit."""
    return _SESSION.sub(rb"\1[removed]\3", body).decode("utf-8", "replace")


def same_org(configured: str, given: str) -> bool:
    """Whether two org ids name the same org (15- and 18-character forms both accepted)."""
    mine, theirs = canonical_id(configured.strip()), canonical_id(given.strip())
    return mine is not None and mine == theirs
