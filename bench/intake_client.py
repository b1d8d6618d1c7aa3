"""The load generator of bench/intake.py: signed Zendesk deliveries over keep-alive HTTP/1.1.

Every request is built (body, signature, headers, the whole HTTP/1.1 message as bytes) before
the clock starts, so the client's per-request work during the timed window is one socket write
and the parse of one response: the same for both servers it is pointed at. The client keeps
`concurrency` requests in flight on as many keep-alive connections (closed loop: a connection
sends its next request when its answer arrived), on one asyncio loop (uvloop when installed).
It speaks raw HTTP/1.1 rather than httpx because it shares the machine's two cores with the
servers it measures: a heavier client would slow the fast (bare) side more than the slow one
and flatter the ratio.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

PATH = "/webhooks/zendesk"


def zendesk_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 UTC with a Z, as Zendesk sends it (`2026-11-24T10:00:00Z`)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, timestamp + raw body)): Zendesk's webhook signature."""
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def event_body(event_id: str, timestamp: str, ticket_id: int) -> bytes:
    """A Zendesk event-subscription delivery (ticket.created, tagged `refund`)."""
    return json.dumps(
        {
            "type": "zen:event-type:ticket.created",
            "account_id": 1,
            "id": event_id,
            "time": timestamp,
            "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket_id}",
            "detail": {"id": str(ticket_id), "requester_id": "101", "tags": ["refund"]},
            "event": {},
        }
    ).encode()


def build_requests(host: str, port: int, secret: str, count: int, tag: str) -> list[bytes]:
    """`count` complete, distinct, signed HTTP/1.1 requests (event ids `<tag>-<n>`)."""
    timestamp = zendesk_timestamp()
    out = []
    for n in range(count):
        event_id = f"{tag}-{n:07d}"
        body = event_body(event_id, timestamp, 4821 + n % 1000)
        head = (
            f"POST {PATH} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "User-Agent: Zendesk Webhook\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "X-Zendesk-Account-Id: 1\r\n"
            "X-Zendesk-Webhook-Id: 01BENCHWEBHOOK0000000000000\r\n"
            f"X-Zendesk-Webhook-Invocation-Id: {tag}-inv-{n}\r\n"
            f"X-Zendesk-Webhook-Signature: {zendesk_signature(secret, timestamp, body)}\r\n"
            f"X-Zendesk-Webhook-Signature-Timestamp: {timestamp}\r\n"
            "\r\n"
        )
        out.append(head.encode() + body)
    return out


@dataclass
class LoadResult:
    """What one load run saw: the timed window, each answer's status and latency."""

    requests: int
    concurrency: int
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, accepted (202) only
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # transport errors, first bodies of non-202
    reconnects: int = 0

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def errors(self) -> int:
        return self.requests - self.accepted

    @property
    def rate(self) -> float:
        """Accepted (202) requests per second of the timed window."""
        return self.accepted / self.seconds

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        k = min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))
        return 1000 * ordered[k]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and "close" in value.lower():
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.readexactly(length) if length else b""
    return status, body, not close


async def _run(
    host: str, port: int, requests: list[bytes], concurrency: int, timeout: float
) -> LoadResult:
    result = LoadResult(len(requests), concurrency)
    next_index = 0
    go = asyncio.Event()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def worker(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        nonlocal next_index
        reader, writer = conn
        await go.wait()
        while next_index < len(requests):
            i = next_index
            next_index += 1
            t = time.perf_counter()
            try:
                writer.write(requests[i])
                status, body, keep = await asyncio.wait_for(_read_response(reader), timeout)
            except (
                TimeoutError,
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
            ) as exc:
                result.statuses[-1] += 1
                result.failures.append(f"request {i}: {type(exc).__name__}: {exc}")
                result.finished = time.perf_counter()
                writer.close()
                reader, writer = await connect()
                result.reconnects += 1
                continue
            elapsed = time.perf_counter() - t
            result.statuses[status] += 1
            if status == 202:
                result.latencies.append(elapsed)
            elif len(result.failures) < 20:
                result.failures.append(f"request {i}: HTTP {status}: {body[:300]!r}")
            if not keep:
                writer.close()
                reader, writer = await connect()
                result.reconnects += 1
            result.finished = time.perf_counter()
        writer.close()

    conns = [await connect() for _ in range(concurrency)]
    tasks = [asyncio.create_task(worker(c)) for c in conns]
    await asyncio.sleep(0)
    result.started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    if result.finished == 0.0:
        result.finished = time.perf_counter()
    return result


def _loop_factory() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_load(
    host: str, port: int, requests: list[bytes], concurrency: int, timeout: float = 60.0
) -> LoadResult:
    """Send every request with `concurrency` in flight; the clock runs from the moment all
    connections are open until the last answer arrived."""
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(_run(host, port, requests, concurrency, timeout))
