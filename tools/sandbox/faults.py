"""Fault injection: latency, 5xx, 429, timeouts, "commit, then drop the connection" and
"acknowledge without applying" (a lost write).

Faults are set per downstream system (or "*" for all) through /_sandbox/faults or the
OPSGATE_SANDBOX_FAULTS environment variable, and apply to every later request of that system
(never to /_sandbox/*) until cleared or until their `count` runs out. The layer runs outside the
FastAPI stack (see app.SandboxApp), so it can withhold a response and close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.datastructures import Headers, QueryParams

from tools.sandbox.fault_wire import fault_response
from tools.sandbox.store import LEDGER_FAULT, Store, record_write
from tools.sandbox.stripe.wire import decode_form

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENV_VAR = "OPSGATE_SANDBOX_FAULTS"
# Where tools.sandbox.server's uvicorn protocol puts the connection's transport.
TRANSPORT_EXTENSION = "opsgate.sandbox.transport"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DROPPED = "dropped_after_commit"
LOST = "lost_write"
# What a write of each system can change; a lost write puts these rows back as they were.
SYSTEM_TABLES = {
    "stripe": ("customers", "charges", "refunds", "idempotency"),
    "zendesk": ("zd_users", "tickets", "audits", "comments"),
    "salesforce": ("sf_records",),
    "okta": ("okta_users", "okta_groups", "okta_members"),
}
_PREFIXES = (
    ("/v1/", "stripe"),
    ("/api/v2/", "zendesk"),
    ("/services/data/", "salesforce"),
    ("/api/v1/", "okta"),
)

System = Literal["stripe", "zendesk", "salesforce", "okta", "*"]
Rate = Field(0.0, ge=0.0, le=1.0)


class FaultSpec(BaseModel):
    """One system's faults; rates are probabilities per request."""

    model_config = ConfigDict(extra="forbid")

    system: System
    latency_ms: float = Field(0, ge=0)
    error_rate: float = Rate
    error_status: int = Field(503, ge=500, le=599)
    rate_limit_rate: float = Rate
    retry_after: int = Field(1, ge=0)
    timeout_rate: float = Rate
    timeout_seconds: float = Field(30, ge=0)
    commit_then_drop_rate: float = Rate
    # The system answers the write as a success, but the change is rolled back (a silently
    # lost write): only a read-back after the write can tell.
    lost_write_rate: float = Rate
    count: int | None = Field(None, ge=1)
    seed: int | None = None


_SPECS: TypeAdapter[FaultSpec | list[FaultSpec]] = TypeAdapter(FaultSpec | list[FaultSpec])


def parse_env(text: str | None) -> list[FaultSpec]:
    """The faults in OPSGATE_SANDBOX_FAULTS (one spec or a list); ValueError if invalid."""
    if not text or not text.strip():
        return []
    try:
        specs = _SPECS.validate_python(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"{ENV_VAR} is not a valid fault spec (or list of them): {exc}") from exc
    return specs if isinstance(specs, list) else [specs]


def system_of(path: str) -> str | None:
    """The emulated system a request path belongs to (None: control or unknown paths)."""
    return next((system for prefix, system in _PREFIXES if path.startswith(prefix)), None)


@dataclass
class _Active:
    spec: FaultSpec
    rng: random.Random
    remaining: int | None
    fired: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Decision:
    """What to do to one request: its spec and the fault kind drawn (None: latency only)."""

    spec: FaultSpec
    kind: str | None


class Faults:
    """The active faults of one sandbox app, and the layer that injects them."""

    def __init__(self, store: Store, specs: list[FaultSpec] | None = None) -> None:
        self.store = store
        self._lock = threading.Lock()
        # One lost write at a time: its snapshot and restore must not interleave with another's.
        self._lost = asyncio.Lock()
        self._active: dict[str, _Active] = {}
        for spec in specs or ():
            self.set(spec)

    def set(self, spec: FaultSpec) -> None:
        """Replace the faults of spec.system."""
        with self._lock:
            self._active[spec.system] = _Active(spec, random.Random(spec.seed), spec.count)

    def clear(self, system: str | None = None) -> None:
        """Clear one system's faults, or all."""
        with self._lock:
            if system is None:
                self._active.clear()
            else:
                self._active.pop(system, None)

    def snapshot(self) -> dict[str, Any]:
        """The active faults with their remaining count and how often each kind fired."""
        with self._lock:
            return {
                name: {**a.spec.model_dump(), "remaining": a.remaining, "fired": dict(a.fired)}
                for name, a in self._active.items()
            }

    def decide(self, system: str, write: bool) -> Decision | None:
        """Draw the fault for one request of `system` (consuming one of its `count`)."""
        with self._lock:
            key = system if system in self._active else "*"
            active = self._active.get(key)
            if active is None:
                return None
            if active.remaining is not None:
                active.remaining -= 1
                if active.remaining <= 0:
                    del self._active[key]
            spec = active.spec
            # Always four draws in a fixed order, so a seed fixes the whole sequence (a fifth
            # only when lost writes are asked for, so older seeded sequences stay the same).
            draws = [active.rng.random() for _ in range(5 if spec.lost_write_rate else 4)]
            kind: str | None = None
            if draws[0] < spec.timeout_rate:
                kind = "timeout"
            elif draws[1] < spec.error_rate:
                kind = f"error_{spec.error_status}"
            elif draws[2] < spec.rate_limit_rate:
                kind = "rate_limited"
            elif write and draws[3] < spec.commit_then_drop_rate:
                kind = DROPPED
            elif write and spec.lost_write_rate and draws[4] < spec.lost_write_rate:
                kind = LOST
            if kind is not None:
                active.fired[kind] += 1
            return Decision(spec, kind)

    async def handle(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Serve one HTTP request through `app`, injecting the faults that apply to it."""
        system = system_of(scope["path"])
        write = scope["method"] in WRITE_METHODS
        decision = self.decide(system, write) if system else None
        if decision is None:
            await app(scope, receive, send)
            return
        spec, kind = decision.spec, decision.kind
        if spec.latency_ms:
            await asyncio.sleep(spec.latency_ms / 1000)
        if kind is None:
            await app(scope, receive, send)
            return
        if kind == DROPPED:
            await _commit_then_drop(scope, receive, send, app, spec)
            return
        if kind == LOST:
            await self._acknowledge_without_applying(scope, receive, send, app, system or "")
            return
        status = {"timeout": 504, "rate_limited": 429}.get(kind, spec.error_status)
        if write:  # refused before reaching the system: no state change, but on the ledger
            raw = await _read_body(receive)
            await run_in_threadpool(self._record, scope, system or "", raw, status, kind)
        if kind == "timeout":
            await asyncio.sleep(spec.timeout_seconds)
        await fault_response(system or "", status, spec.retry_after)(scope, receive, send)

    async def _acknowledge_without_applying(
        self, scope: Scope, receive: Receive, send: Send, app: ASGIApp, system: str
    ) -> None:
        """Serve the write, then undo its effect before the client hears the (successful) answer.

        The route runs as usual (validation, effect, ledger entry marked fault=lost_write);
        then the rows of the system's tables are put back as they were, and the ledger entry
        says `noop` instead of `applied`: the request was answered as done and changed nothing.
        A row another request changes in that window is put back too (a sandbox fault, not a
        concurrency model: aim it at one job, or bound it with `count`).
        """
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        async with self._lost:
            before = await run_in_threadpool(_snapshot, self.store, system)
            token = LEDGER_FAULT.set(LOST)
            try:
                await app(scope, receive, hold)
            finally:
                LEDGER_FAULT.reset(token)
            await run_in_threadpool(_restore, self.store, system, before)
        for message in held:  # only now: a read-back right after the answer finds no change
            await send(message)

    def _record(self, scope: Scope, system: str, raw: bytes, status: int, kind: str) -> None:
        """Ledger entry for a write the fault layer refused."""
        headers = Headers(scope=scope)
        query = QueryParams(scope.get("query_string", b""))
        body: Any
        if system == "stripe":
            body = decode_form(raw)
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"raw": raw.decode("utf-8", "replace")}
        else:
            body = dict(query) or None
        with self.store.transaction() as conn:
            record_write(
                conn,
                system=system,
                method=scope["method"],
                path=scope["path"],
                idempotency_key=headers.get("idempotency-key"),
                body=body,
                status_code=status,
                outcome="rejected",
                fault=kind,
            )


@dataclass(frozen=True)
class _Snapshot:
    """A system's rows (by table, by rowid) and the last ledger entry before a lost write."""

    rows: dict[str, dict[int, tuple[Any, ...]]]
    columns: dict[str, list[str]]
    ledger_seq: int


def _read_rows(
    conn: sqlite3.Connection, table: str
) -> tuple[list[str], dict[int, tuple[Any, ...]]]:
    cursor = conn.execute(f"SELECT rowid AS _rowid, * FROM {table}")  # noqa: S608 - fixed names
    columns = [d[0] for d in cursor.description][1:]
    return columns, {int(row[0]): tuple(row[1:]) for row in cursor.fetchall()}


def _snapshot(store: Store, system: str) -> _Snapshot:
    """The rows a write of `system` could change, as they are now."""
    rows: dict[str, dict[int, tuple[Any, ...]]] = {}
    columns: dict[str, list[str]] = {}
    with store.connect() as conn:
        for table in SYSTEM_TABLES.get(system, ()):
            columns[table], rows[table] = _read_rows(conn, table)
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()[0]
    return _Snapshot(rows, columns, int(seq))


def _restore(store: Store, system: str, before: _Snapshot) -> None:
    """Put the system's rows back as in `before`; the lost write's ledger entry becomes noop."""
    with store.transaction() as conn:
        # Rows come back in any order: check references once, at commit.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        for table, old in before.rows.items():
            names = before.columns[table]
            _, now = _read_rows(conn, table)
            for rowid in now.keys() - old.keys():
                conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))  # noqa: S608
            insert = (
                f"INSERT OR REPLACE INTO {table} (rowid, {', '.join(names)}) "  # noqa: S608
                f"VALUES ({', '.join('?' * (len(names) + 1))})"
            )
            for rowid, values in old.items():
                if now.get(rowid) != values:
                    conn.execute(insert, (rowid, *values))
        conn.execute(
            "UPDATE ledger SET outcome = 'noop' WHERE seq > ? AND system = ? AND fault = ?"
            " AND outcome = 'applied'",
            (before.ledger_seq, system, LOST),
        )


async def _read_body(receive: Receive) -> bytes:
    """The whole request body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _transport(scope: Scope, send: Send) -> Any:
    """The connection's transport: from our uvicorn protocol, or stock uvicorn's cycle."""
    extension = (scope.get("extensions") or {}).get(TRANSPORT_EXTENSION)
    if extension:
        return extension["transport"]
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if hasattr(transport, "abort") else None


async def _commit_then_drop(
    scope: Scope, receive: Receive, send: Send, app: ASGIApp, spec: FaultSpec
) -> None:
    """Let the write happen (ledger: fault=dropped_after_commit), then drop the connection."""

    async def swallow(_message: Message) -> None:
        """The response is produced but never sent."""

    token = LEDGER_FAULT.set(DROPPED)
    try:
        await app(scope, receive, swallow)
    finally:
        LEDGER_FAULT.reset(token)
    transport = _transport(scope, send)
    if transport is None:
        # No socket to close (e.g. an in-process test client): hold, then end with no response.
        await asyncio.sleep(spec.timeout_seconds)
        return
    transport.abort()  # close the socket now, nothing written: the client sees EOF
    # Wait for the server to notice (http.disconnect), so it does not answer a 500 instead.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while (await receive())["type"] != "http.disconnect":
                pass


# --- control endpoints ----------------------------------------------------------------------

router = APIRouter(prefix="/_sandbox", tags=["sandbox"])


def _faults(request: Request) -> Faults:
    faults: Faults = request.app.state.faults
    return faults


@router.post("/faults")
def set_faults(spec: FaultSpec, request: Request) -> dict[str, Any]:
    """Replace one system's faults (or "*": every system without faults of its own)."""
    _faults(request).set(spec)
    return {"faults": _faults(request).snapshot()}


@router.get("/faults")
def get_faults(request: Request) -> dict[str, Any]:
    """The active faults."""
    return {"faults": _faults(request).snapshot()}


@router.delete("/faults")
def clear_faults(request: Request, system: System | None = None) -> dict[str, Any]:
    """Clear every fault, or one system's (`?system=`)."""
    _faults(request).clear(system)
    return {"faults": _faults(request).snapshot()}
