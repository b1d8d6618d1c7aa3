"""SQLite state of the sandbox: schema, connections, transactions and the write ledger."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS charges (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    amount INTEGER NOT NULL,
    amount_refunded INTEGER NOT NULL DEFAULT 0,
    currency TEXT NOT NULL,
    description TEXT,
    created INTEGER NOT NULL,
    -- Stripe's `disputed`: the customer opened a dispute (chargeback) with their bank.
    disputed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    charge_id TEXT NOT NULL REFERENCES charges(id),
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_charge ON refunds(charge_id);
CREATE TABLE IF NOT EXISTS zd_users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT,
    type TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    requester_id INTEGER NOT NULL,
    submitter_id INTEGER NOT NULL,
    assignee_id INTEGER,
    group_id INTEGER,
    organization_id INTEGER,
    external_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL,
    author_id INTEGER NOT NULL,
    channel TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL,
    audit_id INTEGER,
    author_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    public INTEGER NOT NULL,
    channel TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_ticket ON comments(ticket_id);
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    params TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS sf_records (
    id TEXT PRIMARY KEY,
    sobject TEXT NOT NULL,
    fields TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS okta_users (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    activated TEXT,
    status_changed TEXT,
    last_login TEXT,
    last_updated TEXT NOT NULL,
    password_changed TEXT
);
CREATE TABLE IF NOT EXISTS okta_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    created TEXT NOT NULL,
    last_updated TEXT NOT NULL,
    last_membership_updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS okta_members (
    group_id TEXT NOT NULL REFERENCES okta_groups(id),
    user_id TEXT NOT NULL REFERENCES okta_users(id),
    PRIMARY KEY (group_id, user_id)
);
"""

# Separate so an older sandbox file (ledger without `fault` and 'noop') can be rebuilt.
LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    system TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    idempotency_key TEXT,
    body TEXT,
    status_code INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'replayed', 'rejected', 'noop')),
    at TEXT NOT NULL,
    fault TEXT
)
"""
_LEDGER_COLUMNS = "seq, system, method, path, idempotency_key, body, status_code, outcome, at"

# The fault the fault layer injected into the request being handled (None: no fault); the
# ledger entry a route writes while it is set records it.
LEDGER_FAULT: ContextVar[str | None] = ContextVar("sandbox_ledger_fault", default=None)

# Wiped on reset; sqlite_sequence too, so ids and ledger seq restart after a reset.
TABLES = (
    "ledger",
    "okta_members",
    "okta_groups",
    "okta_users",
    "sf_records",
    "idempotency",
    "comments",
    "audits",
    "tickets",
    "zd_users",
    "refunds",
    "charges",
    "customers",
)


def utc_now() -> datetime:
    """Current time in UTC."""
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """ISO 8601 with a `Z` suffix and whole seconds, as Zendesk renders timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """The sandbox's SQLite database; one short-lived connection per unit of work."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            # WAL lets readers run while a writer holds the lock; set once, it persists.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        with self.transaction() as conn:
            _migrate_ledger(conn)
            _migrate_charges(conn)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Open a connection in autocommit mode (callers open transactions explicitly)."""
        # A fresh connection per request keeps uvicorn's threadpool free of shared state.
        conn = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken with BEGIN IMMEDIATE, committed on success."""
        # IMMEDIATE takes the write lock up front, so an idempotency check and the effect it
        # guards cannot interleave with another writer (thread or process).
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def is_empty(self) -> bool:
        """True when no seed data is present."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM charges) + (SELECT COUNT(*) FROM tickets)"
            ).fetchone()
        return int(row[0]) == 0


def _migrate_ledger(conn: sqlite3.Connection) -> None:
    """Create the ledger, or rebuild one made by an older sandbox (no `fault`, no 'noop')."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'ledger'").fetchone()
    if row is not None and "'noop'" in row[0]:
        return
    if row is not None:
        conn.execute("ALTER TABLE ledger RENAME TO ledger_old")
    conn.execute(LEDGER_DDL)
    if row is not None:
        conn.execute(
            f"INSERT INTO ledger ({_LEDGER_COLUMNS}) SELECT {_LEDGER_COLUMNS} FROM ledger_old"  # noqa: S608
        )
        conn.execute("DROP TABLE ledger_old")


def _migrate_charges(conn: sqlite3.Connection) -> None:
    """Add `disputed` to the charges of a sandbox database made before it existed."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(charges)")}
    if "disputed" not in columns:
        conn.execute("ALTER TABLE charges ADD COLUMN disputed INTEGER NOT NULL DEFAULT 0")


def wipe(conn: sqlite3.Connection) -> None:
    """Delete every row of every sandbox table (inside the caller's transaction)."""
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    conn.execute("DELETE FROM sqlite_sequence")


def record_write(
    conn: sqlite3.Connection,
    *,
    system: str,
    method: str,
    path: str,
    idempotency_key: str | None,
    body: Any,
    status_code: int,
    outcome: str,
    fault: str | None = None,
) -> int:
    """Append one received write to the ledger and return its sequence number.

    `fault` defaults to the fault injected into the current request (LEDGER_FAULT).
    """
    cur = conn.execute(
        "INSERT INTO ledger (system, method, path, idempotency_key, body, status_code,"
        " outcome, at, fault) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            system,
            method,
            path,
            idempotency_key,
            json.dumps(body, sort_keys=True),
            status_code,
            outcome,
            utc_now().isoformat(timespec="microseconds").replace("+00:00", "Z"),
            fault if fault is not None else LEDGER_FAULT.get(),
        ),
    )
    return int(cur.lastrowid or 0)


def list_writes(
    conn: sqlite3.Connection, *, system: str | None = None, outcome: str | None = None
) -> list[dict[str, Any]]:
    """Ledger entries oldest first, optionally filtered by system and outcome."""
    sql = "SELECT * FROM ledger WHERE (? IS NULL OR system = ?) AND (? IS NULL OR outcome = ?)"
    rows = conn.execute(sql + " ORDER BY seq", (system, system, outcome, outcome)).fetchall()
    return [
        {
            "seq": row["seq"],
            "system": row["system"],
            "method": row["method"],
            "path": row["path"],
            "idempotency_key": row["idempotency_key"],
            "body": json.loads(row["body"]) if row["body"] is not None else None,
            "status_code": row["status_code"],
            "outcome": row["outcome"],
            "at": row["at"],
            "fault": row["fault"],
        }
        for row in rows
    ]
