"""A tiny OpenID provider for tests: discovery, JWKS, an authorize endpoint that signs the
configured user in at once, and a token endpoint that checks the code, the client secret and
the PKCE verifier and returns a signed ID token. `misbehave` makes it send a bad ID token."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

Misbehaviour = Literal["", "aud", "nonce", "expired", "signature", "issuer"]
CLIENT_ID = "opsgate-console"
CLIENT_SECRET = "provider-client-secret-0001"


@dataclass
class Provider:
    """The provider's state: who signs in next, and how the next ID token goes wrong."""

    issuer: str = ""
    claims: dict[str, Any] = field(default_factory=dict)
    misbehave: Misbehaviour = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "k1"}))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0

    def id_token(self, grant: dict[str, Any]) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **self.claims,
        }
        key = self.key
        if self.misbehave == "aud":
            claims["aud"] = "someone-else"
        elif self.misbehave == "nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.misbehave == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif self.misbehave == "issuer":
            claims["iss"] = "https://impostor.example.com"
        elif self.misbehave == "signature":
            key = RSAKey.generate_key(2048, {"kid": "k1"})  # same kid, another key
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _json(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._json(
                    {
                        "issuer": provider.issuer,
                        "authorization_endpoint": f"{provider.issuer}/authorize",
                        "token_endpoint": f"{provider.issuer}/token",
                        "jwks_uri": f"{provider.issuer}/jwks",
                        "response_types_supported": ["code"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "code_challenge_methods_supported": ["S256"],
                    }
                )
            elif url.path == "/jwks":
                self._json(KeySet([provider.key]).as_dict(private=False))
            elif url.path == "/authorize":
                self._authorize(query)
            else:
                self._json({"error": "not_found"}, 404)

        def _authorize(self, query: dict[str, str]) -> None:
            ok = (
                query.get("client_id") == CLIENT_ID
                and query.get("response_type") == "code"
                and query.get("code_challenge_method") == "S256"
                and "openid" in query.get("scope", "").split()
                and query.get("nonce")
            )
            if not ok:
                self._json({"error": "invalid_request", "query": query}, 400)
                return
            code = secrets.token_urlsafe(16)
            provider.codes[code] = query
            back = urlencode({"code": code, "state": query.get("state", "")})
            self.send_response(302)
            self.send_header("Location", f"{query['redirect_uri']}?{back}")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            provider.token_requests += 1
            basic = self.headers.get("Authorization", "").removeprefix("Basic ")
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if basic != expected:
                self._json({"error": "invalid_client"}, 401)
                return
            grant = provider.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if (
                grant is None
                or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != grant["redirect_uri"]
                or challenge != grant["code_challenge"]
            ):
                self._json({"error": "invalid_grant"}, 400)
                return
            self._json(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": provider.id_token(grant),
                }
            )

    return Handler


@contextmanager
def running(claims: dict[str, Any]) -> Iterator[Provider]:
    """A provider on a free local port for the duration, signing in a person with `claims`."""
    provider = Provider(claims=dict(claims))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
