"""A local webhook receiver: a real HTTP server on a free port that records what is posted
to it, and can answer with failures or slowly (for notification and delivery tests)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import free_port


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and the status it answered."""

    path: str
    headers: dict[str, str]
    raw: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.raw)


class Receiver:
    """Records every POST; answers the next `fail_next` ones with `fail_status`, and waits
    `delay` seconds before answering each."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook/secret-token-0123"
        self.received: list[Received] = []
        self.fail_next = 0
        self.fail_status = 500
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    status = 200
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        status = receiver.fail_status
                    receiver.received.append(Received(self.path, headers, raw, status))
                body = b"ok" if status == 200 else b"failed"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def delivered(self) -> list[Received]:
        """The requests answered 200 (what the receiver accepted)."""
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def all(self) -> list[Received]:
        """Every request, failed ones too."""
        with self._lock:
            return list(self.received)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
