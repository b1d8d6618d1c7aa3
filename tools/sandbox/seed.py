"""Demo data the sandbox starts with; ids and texts are relied on by the demo inbox and tests."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from tools.sandbox.store import Store, iso_z, utc_now, wipe

AGENT_USER_ID = 900


class User(NamedTuple):
    """A Zendesk user."""

    id: int
    name: str
    email: str
    role: str


class Charge(NamedTuple):
    """A Stripe charge as seeded."""

    id: str
    customer: str
    amount: int
    currency: str
    amount_refunded: int


class Ticket(NamedTuple):
    """A Zendesk ticket as seeded."""

    id: int
    requester_id: int
    subject: str
    description: str
    status: str
    tags: tuple[str, ...]


USERS = (
    User(101, "Alice Adams", "alice@example.com", "end-user"),
    User(102, "Bob Brown", "bob@example.com", "end-user"),
    User(103, "Carol Chen", "carol@example.com", "end-user"),
    User(104, "Dave Diaz", "dave@example.com", "end-user"),
    User(105, "Erin Evans", "erin@example.com", "end-user"),
    User(106, "Frank Fischer", "frank@example.com", "end-user"),
    User(AGENT_USER_ID, "opsgate agent", "agent@opsgate.example", "agent"),
)

# Stripe customers mirror the Zendesk end users: cus_<first name>, <first name>@example.com.
CUSTOMERS = tuple(
    (f"cus_{u.name.split()[0].lower()}", u.email, u.name) for u in USERS if u.role == "end-user"
)

CHARGES = (
    Charge("ch_1001", "cus_alice", 2500, "usd", 0),
    Charge("ch_1002", "cus_bob", 4000, "usd", 0),
    Charge("ch_1003", "cus_carol", 12000, "usd", 0),
    Charge("ch_1004", "cus_dave", 3000, "usd", 0),
    Charge("ch_1005", "cus_erin", 1500, "usd", 1500),
    Charge("ch_1006", "cus_frank", 5000, "eur", 0),
    Charge("ch_1007", "cus_alice", 1999, "usd", 0),
)

# (refund id, charge id, amount, reason): the refunds that explain seeded amount_refunded.
REFUNDS = (("re_seed_1005", "ch_1005", 1500, "requested_by_customer"),)

_REFUND = ("refund",)
TICKETS = (
    Ticket(
        4821,
        101,
        "Refund for duplicate charge",
        "Hi, I was charged twice for my order. Please refund $25.00 for charge ch_1001. "
        "Thanks, Alice",
        "open",
        _REFUND,
    ),
    Ticket(
        4822,
        102,
        "Refund request",
        "Please refund 40.00 USD on charge ch_1002, the product never arrived.",
        "open",
        _REFUND,
    ),
    Ticket(
        4823,
        103,
        "Refund please",
        "I would like a refund of $90.00 for charge ch_1003.",
        "open",
        _REFUND,
    ),
    Ticket(4824, 104, "Refund", "Please refund 30.00 EUR for charge ch_1004.", "open", _REFUND),
    Ticket(4825, 105, "Refund again?", "Please refund $15.00 for charge ch_1005.", "open", _REFUND),
    Ticket(
        4826,
        106,
        "Password reset",
        "I can't log into my account, please help me reset my password.",
        "open",
        ("account",),
    ),
    Ticket(4827, 106, "Erstattung", "Please refund €20.00 for charge ch_1006.", "open", _REFUND),
    Ticket(
        4828,
        102,
        "Refund for my order",
        "Please refund $19.99 for charge ch_1007.",
        "open",
        _REFUND,
    ),
    Ticket(4829, 101, "Old refund", "Please refund $5.00 for charge ch_1001.", "closed", _REFUND),
    # No amount stated: the rules tier cannot plan it; a model tier can.
    Ticket(
        4830,
        103,
        "Money back",
        "I cancelled one of my two seats within the hour but was still charged for both "
        "(ch_1003). I want my money back for the cancelled seat.",
        "open",
        _REFUND,
    ),
)


def seed(conn: sqlite3.Connection) -> None:
    """Insert the demo data (inside the caller's transaction)."""
    # Times are relative to seeding so "charged N days ago" policies hold whenever the demo runs.
    now = utc_now().replace(microsecond=0)
    for user in USERS:
        conn.execute(
            "INSERT INTO zd_users (id, name, email, role, created_at) VALUES (?, ?, ?, ?, ?)",
            (user.id, user.name, user.email, user.role, iso_z(now - timedelta(days=90))),
        )
    conn.executemany("INSERT INTO customers (id, email, name) VALUES (?, ?, ?)", CUSTOMERS)
    for n, charge in enumerate(CHARGES):
        created = int((now - timedelta(days=3, hours=n)).timestamp())
        conn.execute(
            "INSERT INTO charges (id, customer_id, amount, amount_refunded, currency,"
            " description, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                charge.id,
                charge.customer,
                charge.amount,
                charge.amount_refunded,
                charge.currency,
                f"Order {charge.id.removeprefix('ch_')}",
                created,
            ),
        )
    for refund_id, charge_id, amount, reason in REFUNDS:
        conn.execute(
            "INSERT INTO refunds (id, charge_id, amount, currency, reason, metadata, created)"
            " SELECT ?, id, ?, currency, ?, '{}', created + 3600 FROM charges WHERE id = ?",
            (refund_id, amount, reason, charge_id),
        )
    for n, ticket in enumerate(TICKETS):
        _seed_ticket(conn, ticket, iso_z(now - timedelta(hours=len(TICKETS) - n)))
    seed_salesforce(conn, now)
    seed_okta(conn, now)


def _seed_ticket(conn: sqlite3.Connection, ticket: Ticket, created_at: str) -> None:
    """Insert one ticket with its description as the first, public comment by the requester."""
    add_ticket(conn, ticket, created_at, [])


def add_ticket(
    conn: sqlite3.Connection,
    ticket: Ticket,
    created_at: str,
    later: list[tuple[int, str]],
) -> None:
    """Insert a ticket, its description as the first public comment by the requester, then
    `later` comments as (author id, body), public."""
    conn.execute(
        "INSERT INTO tickets (id, subject, description, status, priority, type, tags,"
        " requester_id, submitter_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 'normal', NULL, ?, ?, ?, ?, ?)",
        (
            ticket.id,
            ticket.subject,
            ticket.description,
            ticket.status,
            json.dumps(list(ticket.tags)),
            ticket.requester_id,
            ticket.requester_id,
            created_at,
            created_at,
        ),
    )
    audit = conn.execute(
        "INSERT INTO audits (ticket_id, author_id, channel, events, created_at)"
        " VALUES (?, ?, 'email', '[]', ?)",
        (ticket.id, ticket.requester_id, created_at),
    )
    conn.execute(
        "INSERT INTO comments (ticket_id, audit_id, author_id, body, public, channel, created_at)"
        " VALUES (?, ?, ?, ?, 1, 'email', ?)",
        (ticket.id, audit.lastrowid, ticket.requester_id, ticket.description, created_at),
    )
    for author, body in later:
        audit = conn.execute(
            "INSERT INTO audits (ticket_id, author_id, channel, events, created_at)"
            " VALUES (?, ?, 'web', '[]', ?)",
            (ticket.id, author, created_at),
        )
        conn.execute(
            "INSERT INTO comments (ticket_id, audit_id, author_id, body, public, channel,"
            " created_at) VALUES (?, ?, ?, ?, 1, 'web', ?)",
            (ticket.id, audit.lastrowid, author, body, created_at),
        )


def reset(store: Store) -> None:
    """Wipe all sandbox state (ledger and idempotency keys included) and reseed the demo data."""
    with store.transaction() as conn:
        wipe(conn)
        seed(conn)


# --- Salesforce (accounts payable) ----------------------------------------------------------
# Record ids are fixed 18-character Salesforce ids (key prefix a01 = Invoice__c,
# a02 = Purchase_Order__c; the last 3 characters are the case-checksum of the first 15):
#
#   PO-5001  a02Dn00000lZn4RIAS      INV-1001  a01Dn00000HuWdiIAF
#   PO-5002  a02Dn00000EjIOvIAN      INV-1002  a01Dn00000qbYnTIAU
#   PO-5003  a02Dn00000ROnBaIAL      INV-1003  a01Dn00000pCkrqIAC
#   PO-5004  a02Dn00000f2nmRIAQ      INV-1004  a01Dn00000ZpM88IAF  (Name "INV-1001": duplicate)
#                                    INV-1005  a01Dn00000ME7ADIA1
#                                    INV-1006  a01Dn00000FuJRvIAN
#                                    INV-1007  a01Dn00000avbdXIAQ
PURCHASE_ORDER_IDS = {
    "PO-5001": "a02Dn00000lZn4RIAS",
    "PO-5002": "a02Dn00000EjIOvIAN",
    "PO-5003": "a02Dn00000ROnBaIAL",
    "PO-5004": "a02Dn00000f2nmRIAQ",
}
# Keyed by seed label; INV-1004's record is *named* INV-1001 (a duplicate invoice number).
INVOICE_IDS = {
    "INV-1001": "a01Dn00000HuWdiIAF",
    "INV-1002": "a01Dn00000qbYnTIAU",
    "INV-1003": "a01Dn00000pCkrqIAC",
    "INV-1004": "a01Dn00000ZpM88IAF",
    "INV-1005": "a01Dn00000ME7ADIA1",
    "INV-1006": "a01Dn00000FuJRvIAN",
    "INV-1007": "a01Dn00000avbdXIAQ",
}


class PurchaseOrder(NamedTuple):
    """A Purchase_Order__c as seeded."""

    name: str
    vendor: str
    amount: float
    currency: str
    status: str


class Invoice(NamedTuple):
    """An Invoice__c as seeded; due `due_days` from seeding (negative: past due).

    `name` (the invoice number) is the seed label unless given.
    """

    label: str
    vendor: str
    amount: float
    po: str | None
    due_days: int
    status: str
    exception_reason: str | None
    name: str | None = None


PURCHASE_ORDERS = (
    PurchaseOrder("PO-5001", "Acme Supplies", 1200.00, "USD", "Open"),
    PurchaseOrder("PO-5002", "Globex Parts", 800.00, "USD", "Open"),
    PurchaseOrder("PO-5003", "Initech Services", 5000.00, "USD", "Open"),
    PurchaseOrder("PO-5004", "Acme Supplies", 300.00, "USD", "Closed"),
)

_ACME, _GLOBEX, _EXC = "Acme Supplies", "Globex Parts", "Exception"
INVOICES = (
    Invoice("INV-1001", _ACME, 1200.00, "PO-5001", 20, _EXC, "needs review"),
    Invoice("INV-1002", _GLOBEX, 880.00, "PO-5002", 15, _EXC, "amount differs from PO"),
    Invoice("INV-1003", "Initech Services", 5000.00, None, 10, _EXC, "missing purchase order"),
    Invoice(
        "INV-1004", _ACME, 1200.00, "PO-5001", 20, _EXC, "duplicate invoice number?", "INV-1001"
    ),
    Invoice("INV-1005", "Umbrella Corp", 450.00, None, 5, _EXC, "vendor not on allowlist"),
    Invoice("INV-1006", _ACME, 300.00, "PO-5004", -3, _EXC, "due date passed"),
    Invoice("INV-1007", _GLOBEX, 800.00, "PO-5002", 30, "Paid", None),
)


def sf_datetime(moment: datetime) -> str:
    """A Salesforce datetime: `2024-05-01T12:00:00.000+0000`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def seed_salesforce(conn: sqlite3.Connection, now: datetime) -> None:
    """Insert the purchase orders and invoices (inside the caller's transaction)."""
    created = sf_datetime(now - timedelta(days=7))
    for po in PURCHASE_ORDERS:
        fields = {
            "Name": po.name,
            "CurrencyIsoCode": po.currency,
            "Vendor__c": po.vendor,
            "Amount__c": po.amount,
            "Status__c": po.status,
        }
        _insert_sf(conn, PURCHASE_ORDER_IDS[po.name], "Purchase_Order__c", fields, created)
    for inv in INVOICES:
        fields = {
            "Name": inv.name or inv.label,
            "CurrencyIsoCode": "USD",
            "Vendor__c": inv.vendor,
            "Amount__c": inv.amount,
            "Purchase_Order__c": PURCHASE_ORDER_IDS[inv.po] if inv.po else None,
            "Due_Date__c": (now + timedelta(days=inv.due_days)).date().isoformat(),
            "Status__c": inv.status,
            "Exception_Reason__c": inv.exception_reason,
            "Hold_Reason__c": None,
        }
        _insert_sf(conn, INVOICE_IDS[inv.label], "Invoice__c", fields, created)


def _insert_sf(
    conn: sqlite3.Connection, record_id: str, sobject: str, fields: dict[str, Any], created: str
) -> None:
    """Insert one Salesforce record."""
    conn.execute(
        "INSERT INTO sf_records (id, sobject, fields, created, modified) VALUES (?, ?, ?, ?, ?)",
        (record_id, sobject, json.dumps(fields), created, created),
    )


# --- Okta -----------------------------------------------------------------------------------
# Fixed 20-character Okta ids (users 00u..., groups 00g...):
#   alice@example.com  00u1alicesVQijwX60h7  ACTIVE     Engineering  00g1engineerpowCP0h7
#   bob@example.com    00u2bobrKpgaNmq0q0h7  ACTIVE     Finance      00g2financev4yOVj0h7
#   carol@example.com  00u3carolDOejeB7g0h7  SUSPENDED  Okta Admins  00g3adminsqxRccta0h7
#   dave@corp.example  00u4daveWRji5xAfF0h7  ACTIVE     VPN Users    00g4vpnkpL4NFJLRn0h7
#   erin@corp.example  00u5erinttFA75N2I0h7  ACTIVE
# Okta Admins is the privileged group. Members: alice in Engineering and VPN Users, bob in
# Finance, dave in Engineering.
OKTA_USER_TYPE_ID = "otyl88w49ygDiQjmb0h7"


class OktaUser(NamedTuple):
    """An Okta user as seeded."""

    id: str
    login: str
    first_name: str
    last_name: str
    status: str


class OktaGroup(NamedTuple):
    """An Okta group as seeded."""

    id: str
    name: str
    description: str


OKTA_USERS = (
    OktaUser("00u1alicesVQijwX60h7", "alice@example.com", "Alice", "Adams", "ACTIVE"),
    OktaUser("00u2bobrKpgaNmq0q0h7", "bob@example.com", "Bob", "Brown", "ACTIVE"),
    OktaUser("00u3carolDOejeB7g0h7", "carol@example.com", "Carol", "Chen", "SUSPENDED"),
    OktaUser("00u4daveWRji5xAfF0h7", "dave@corp.example", "Dave", "Diaz", "ACTIVE"),
    OktaUser("00u5erinttFA75N2I0h7", "erin@corp.example", "Erin", "Evans", "ACTIVE"),
)
OKTA_GROUPS = (
    OktaGroup("00g1engineerpowCP0h7", "Engineering", "Engineering staff"),
    OktaGroup("00g2financev4yOVj0h7", "Finance", "Finance and accounts payable"),
    OktaGroup("00g3adminsqxRccta0h7", "Okta Admins", "Okta administrators (privileged)"),
    OktaGroup("00g4vpnkpL4NFJLRn0h7", "VPN Users", "Remote access through the corporate VPN"),
)
PRIVILEGED_GROUP_IDS = frozenset({"00g3adminsqxRccta0h7"})
# (group id, user id)
OKTA_MEMBERSHIPS = (
    ("00g1engineerpowCP0h7", "00u1alicesVQijwX60h7"),
    ("00g4vpnkpL4NFJLRn0h7", "00u1alicesVQijwX60h7"),
    ("00g2financev4yOVj0h7", "00u2bobrKpgaNmq0q0h7"),
    ("00g1engineerpowCP0h7", "00u4daveWRji5xAfF0h7"),
)


def okta_time(moment: datetime) -> str:
    """An Okta timestamp: `2024-05-01T12:00:00.000Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def seed_okta(conn: sqlite3.Connection, now: datetime) -> None:
    """Insert the Okta users, groups and memberships (inside the caller's transaction)."""
    created = okta_time(now - timedelta(days=400))
    for n, user in enumerate(OKTA_USERS):
        changed = okta_time(now - timedelta(days=2)) if user.status != "ACTIVE" else created
        conn.execute(
            "INSERT INTO okta_users (id, login, email, first_name, last_name, status, created,"
            " activated, status_changed, last_login, last_updated, password_changed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user.id,
                user.login,
                user.login,
                user.first_name,
                user.last_name,
                user.status,
                created,
                created,
                changed,
                okta_time(now - timedelta(hours=3 + n)),
                changed,
                okta_time(now - timedelta(days=30)),
            ),
        )
    for group in OKTA_GROUPS:
        conn.execute(
            "INSERT INTO okta_groups (id, name, description, created, last_updated,"
            " last_membership_updated) VALUES (?, ?, ?, ?, ?, ?)",
            (group.id, group.name, group.description, created, created, created),
        )
    conn.executemany("INSERT INTO okta_members (group_id, user_id) VALUES (?, ?)", OKTA_MEMBERSHIPS)


def seed_missing(conn: sqlite3.Connection) -> None:
    """Seed whichever part is empty (a sandbox file made before Salesforce/Okta existed)."""
    if conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0:
        seed(conn)
        return
    now = utc_now().replace(microsecond=0)
    if conn.execute("SELECT COUNT(*) FROM sf_records").fetchone()[0] == 0:
        seed_salesforce(conn, now)
    if conn.execute("SELECT COUNT(*) FROM okta_users").fetchone()[0] == 0:
        seed_okta(conn, now)
