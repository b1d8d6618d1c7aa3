"""The adapters' HTTP client: urllib3's connection pool behind the few methods they use.

httpx cost a worker 0.39 ms of CPU per request against a local server where urllib3's pool
costs 0.22 ms for the same bytes on the wire (14 requests per support_refund job): its
per-request URL model, event hooks, auth flow and header normalisation are work these
adapters never needed. What the adapters rely on is kept: keep-alive (one pool per process
and host), the configured timeout on connect and on each read, no retries of the client's
own (opsgate's are explicit, in tasks/base.py, honouring Retry-After), the proxy from the
environment as httpx read it, and an answer with httpx's `status_code`, `headers`,
`content`, `text` and `json()` so tools/base.py maps errors the same way.
"""

from __future__ import annotations

import json as jsonlib
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError

# Raised for a request that never got an answer: refused, reset, timed out, dropped.
TransportError = HTTPError


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read in full (the adapters' bodies are small JSON documents)."""

    status_code: int
    headers: urllib3.HTTPHeaderDict
    content: bytes

    @property
    def text(self) -> str:
        """The body as text (UTF-8, as every API here sends it)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (ValueError if it is not JSON)."""
        return jsonlib.loads(self.content)


def pool_manager(base_url: str, timeout: float, ca_certs: str | None = None) -> urllib3.PoolManager:
    """A pool for the base URL's host, through the environment's proxy if it names one;
    TLS verified against `ca_certs` (None: the system's certificates)."""
    parts = urlsplit(base_url)
    options: dict[str, Any] = {
        "ca_certs": ca_certs,
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
        # Never the client's own retries: a write retried here would bypass the idempotency
        # claim and the retry budget in tasks/base.py.
        "retries": False,
        # One connection per pool thread (the threads pool runs 8 to 50), kept alive.
        "maxsize": 64,
    }
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


class HttpClient:
    """Requests to one API under `base_url`, with the same headers on each."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = urllib3.HTTPHeaderDict(headers)
        self._json_headers = urllib3.HTTPHeaderDict({**headers, "Content-Type": "application/json"})
        self._pool = pool_manager(self.base_url, timeout)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Answer:
        """Send one request: `url` is a path under the base URL, or an absolute URL (a next
        page link); raises TransportError when no answer came."""
        full = url if url.startswith(("http://", "https://")) else self.base_url + url
        if params:
            full += ("&" if "?" in full else "?") + urlencode(params)
        if json is None:
            body, headers = None, self.headers
        else:
            # The bytes httpx sent: compact UTF-8 JSON, NaN refused.
            body = jsonlib.dumps(
                json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
            headers = self._json_headers
        answer = self._pool.request(
            method, full, body=body, headers=headers, redirect=False, preload_content=True
        )
        return Answer(answer.status, answer.headers, answer.data)

    def get(self, url: str, *, params: dict[str, str] | None = None) -> Answer:
        """GET `url`."""
        return self.request("GET", url, params=params)

    def post(self, url: str, *, params: dict[str, str] | None = None, json: Any = None) -> Answer:
        """POST `url`."""
        return self.request("POST", url, params=params, json=json)

    def put(self, url: str, *, json: Any = None) -> Answer:
        """PUT `url`."""
        return self.request("PUT", url, json=json)

    def patch(self, url: str, *, json: Any = None) -> Answer:
        """PATCH `url`."""
        return self.request("PATCH", url, json=json)

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()
