"""Builders for inbound deliveries, written from the vendors' documentation (not from app code).

Used by the webhook unit tests and the intake fuzz tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"

ORG_15 = "00D5g000004XyZa"
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """X-Zendesk-Webhook-Signature: base64(HMAC-SHA256(secret, timestamp + raw body))."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def sf_id18(id15: str) -> str:
    """Salesforce's 18-character form: three checksum characters from the letters' case."""
    assert len(id15) == 15
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, ch in enumerate(id15[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM[bits]
    return id15 + suffix


ORG_18 = sf_id18(ORG_15)


@dataclass
class Note:
    """One Outbound Message notification."""

    id: str
    record_id: str
    sobject_type: str | None = "Invoice__c"
    fields: dict[str, str] = field(default_factory=dict)


def notification_xml(note: Note) -> str:
    type_attr = f' xsi:type="sf:{note.sobject_type}"' if note.sobject_type is not None else ""
    children = "".join(
        f"<sf:{name}>{escape(value)}</sf:{name}>"
        for name, value in {"Id": note.record_id, **note.fields}.items()
    )
    return (
        f"<Notification><Id>{escape(note.id)}</Id>"
        f'<sObject{type_attr} xmlns:sf="{SOBJECT}">{children}</sObject></Notification>'
    )


def outbound_message(
    notes: Sequence[Note],
    *,
    org_id: str = ORG_18,
    action_id: str = "04k5g000000CaJWAA0",
    session_id: str | None = "00D5g000004XyZa!AQ4AQFakeSessionToken.abc",
    prolog: bool = True,
) -> bytes:
    """An Outbound Message envelope in the shape Salesforce documents."""
    session = (
        f"<SessionId>{escape(session_id)}</SessionId>"
        if session_id is not None
        else '<SessionId xsi:nil="true"/>'
    )
    xml = (
        ('<?xml version="1.0" encoding="UTF-8"?>' if prolog else "")
        + f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:xsi="{XSI}">'
        + "<soapenv:Body>"
        + f'<notifications xmlns="{OUTBOUND}">'
        + f"<OrganizationId>{escape(org_id)}</OrganizationId>"
        + f"<ActionId>{escape(action_id)}</ActionId>"
        + session
        + "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/61.0/00D5g000004XyZa"
        + "</EnterpriseUrl>"
        + "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/61.0/00D5g000004XyZa"
        + "</PartnerUrl>"
        + "".join(notification_xml(n) for n in notes)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    )
    return xml.encode("utf-8")


def invoice_notes(count: int, *, start: int = 0, prefix: str = "04l5g00000") -> list[Note]:
    """`count` notifications about distinct Invoice__c records (valid 18-char ids)."""
    return [
        Note(
            id=f"{prefix}{i:08d}",
            record_id=sf_id18(f"a015g{i:010d}"),
            fields={"Name": f"INV-{i}", "Status__c": "Exception"},
        )
        for i in range(start, start + count)
    ]


def billion_laughs(levels: int, fanout: int = 10) -> bytes:
    """The classic entity-expansion bomb with `levels` nested entities."""
    entities = ['<!ENTITY lol0 "lol">']
    for i in range(1, levels + 1):
        entities.append(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * fanout}">')
    return (
        '<?xml version="1.0"?><!DOCTYPE lolz ['
        + "".join(entities)
        + f"]><lolz>&lol{levels};</lolz>"
    ).encode()
