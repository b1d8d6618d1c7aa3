"""Console sign-in through an OpenID Connect provider (Okta, Entra ID).

The authorization code flow with PKCE (S256), through authlib's httpx client: the start page
sends the browser to the provider with a fresh `state`, `nonce` and code challenge, kept for
ten minutes in a signed HttpOnly cookie scoped to these two paths; the callback checks the
`state`, redeems the code with the client secret and the PKCE verifier, and verifies the ID
token (joserfc): its signature against the provider's JWKS, `iss`, `aud`, `exp` and `nonce`.
Its claims become a `Principal` (name, role, workflow scope) and open a console session
through `sessions.sign_in_oidc`, exactly like an API key's but with no key behind it: the
session ends at its expiry or at sign-out (the provider's own session is not ended).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import structlog
from authlib.integrations.httpx_client import OAuth2Client
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.errors import Forbidden
from app.identity.apikeys import Principal
from app.settings import ROLES, Settings, get_settings
from app.ui import pages, routes, sessions

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/ui", include_in_schema=False)

ATTEMPT_COOKIE = "opsgate_oidc"
ATTEMPT_PATH = "/ui/sign-in/oidc"
ATTEMPT_TTL = 600
# Asymmetric algorithms only: an HS256 token would be "signed" with the client secret.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
CLOCK_LEEWAY = 60


class OidcRefused(Exception):
    """Raised when a sign-in through the OIDC provider is refused; the message is shown."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Attempt:
    """One sign-in in progress: what the callback must find again."""

    state: str
    nonce: str
    verifier: str
    next: str
    started: float

    def cookie(self) -> str:
        """The attempt as a signed cookie value (it holds the PKCE verifier: HttpOnly)."""
        body = base64.urlsafe_b64encode(json.dumps(asdict(self)).encode()).decode()
        return f"{body}.{sessions.sign(body, 'oidc')}"

    @classmethod
    def from_cookie(cls, raw: str | None) -> Attempt | None:
        """The attempt of a cookie, or None when it is missing, forged or too old."""
        body, _, signature = (raw or "").rpartition(".")
        if not body or not hmac.compare_digest(signature, sessions.sign(body, "oidc")):
            return None
        try:
            attempt = cls(**json.loads(base64.urlsafe_b64decode(body)))
        except (ValueError, TypeError):
            return None
        return attempt if time.time() - attempt.started < ATTEMPT_TTL else None


def _client(settings: Settings, redirect_uri: str) -> OAuth2Client:
    secret = settings.oidc_client_secret
    return OAuth2Client(
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        scope=settings.oidc_scopes,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=settings.http_timeout_seconds,
    )


def _get_json(client: OAuth2Client, url: str) -> dict[str, Any]:
    # Any failure to reach the provider or read its answer is one refusal: the provider is
    # unavailable, and nothing about the person is known.
    try:
        answer = client.request("GET", url, withhold_token=True)
        answer.raise_for_status()
        found = answer.json()
    except Exception as exc:  # noqa: BLE001 - the transport's errors are httpx2's
        log.warning("ui.oidc_provider_unreachable", url=url, error=type(exc).__name__)
        raise OidcRefused("the sign-in provider did not answer; try again later", 502) from exc
    if not isinstance(found, dict):
        raise OidcRefused("the sign-in provider's answer was not understood", 502)
    return found


def discover(client: OAuth2Client, settings: Settings) -> dict[str, Any]:
    """The provider's metadata, checked to be the configured issuer's."""
    issuer = (settings.oidc_issuer or "").rstrip("/")
    metadata = _get_json(client, f"{issuer}/.well-known/openid-configuration")
    named = str(metadata.get("issuer", "")).rstrip("/")
    wanted = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    if named != issuer or not all(isinstance(metadata.get(k), str) for k in wanted):
        log.warning("ui.oidc_discovery_refused", issuer=issuer, named=named)
        raise OidcRefused("the sign-in provider's configuration does not match its issuer", 502)
    return metadata


def _redirect_uri(request: Request, settings: Settings) -> str:
    return settings.oidc_redirect_uri or str(request.url_for("oidc_callback"))


@router.get("/sign-in/oidc", response_class=HTMLResponse)
def start(request: Request, next: str = "/ui/escalations") -> Response:  # noqa: A002
    """Send the browser to the provider, with this attempt's state, nonce and PKCE challenge."""
    settings = get_settings()
    if not settings.oidc_configured:
        return pages.render(
            request,
            "error.html",
            {"title": "Not found", "message": "Single sign-on is not configured here."},
            404,
        )
    attempt = Attempt(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(64),
        next=routes._safe_next(next),
        started=time.time(),
    )
    try:
        with _client(settings, _redirect_uri(request, settings)) as client:
            metadata = discover(client, settings)
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=attempt.state,
                code_verifier=attempt.verifier,
                nonce=attempt.nonce,
            )
    except OidcRefused as exc:
        return _refused(request, exc)
    response = RedirectResponse(str(url), status_code=303)
    # Lax, not Strict: the provider sends the browser back here from its own site, and a
    # Strict cookie would not come with that navigation. The session cookie stays Strict.
    response.set_cookie(
        ATTEMPT_COOKIE,
        attempt.cookie(),
        max_age=ATTEMPT_TTL,
        httponly=True,
        samesite="lax",
        secure=settings.environment != "development",
        path=ATTEMPT_PATH,
    )
    return response


# The callback is a GET that opens a session: that is the protocol's shape (the provider
# redirects the browser here). Its CSRF defence is the `state` bound to this browser's attempt
# cookie, and PKCE: a code injected from elsewhere cannot be redeemed without this attempt's
# verifier, and an ID token minted for another attempt fails the nonce check.
@router.get("/sign-in/oidc/callback", name="oidc_callback", response_class=HTMLResponse)
def callback(
    request: Request,
    session: pages.SessionDep,
    state: str = "",
    code: str = "",
    error: str = "",
) -> Response:
    """Check the provider's answer, map the ID token's claims, open a console session."""
    settings = get_settings()
    attempt = Attempt.from_cookie(request.cookies.get(ATTEMPT_COOKIE))
    try:
        if not settings.oidc_configured:
            raise OidcRefused("single sign-on is not configured here", 404)
        if attempt is None or not state or not hmac.compare_digest(attempt.state, state):
            raise OidcRefused("the sign-in attempt expired or was not started here; try again")
        if error or not code:
            raise OidcRefused(f"the sign-in provider refused: {error[:64] or 'no code'}")
        claims = _id_token_claims(request, settings, attempt, code)
        principal, subject = principal_from(claims, settings)
        cookie, reviewer = sessions.sign_in_oidc(
            session,
            principal,
            subject,
            client=routes._client(request),
            user_agent=request.headers.get("user-agent", ""),
        )
        session.commit()
    except Forbidden as exc:
        return _refused(request, OidcRefused(str(exc)))
    except OidcRefused as exc:
        return _refused(request, exc)
    log.info("ui.sign_in", principal=principal.name, role=principal.role, via="oidc")
    assert attempt is not None
    response = RedirectResponse(attempt.next, status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        cookie,
        max_age=int(settings.ui_session_ttl),
        **routes._cookie_flags(),
    )
    response.delete_cookie(ATTEMPT_COOKIE, path=ATTEMPT_PATH)
    return response


def _refused(request: Request, exc: OidcRefused) -> HTMLResponse:
    log.warning("ui.sign_in_refused", why=str(exc), via="oidc", client=routes._client(request))
    page = routes._sign_in_page(request, "/ui/escalations", f"Sign-in refused: {exc}.", exc.status)
    page.delete_cookie(ATTEMPT_COOKIE, path=ATTEMPT_PATH)
    return page


def _id_token_claims(
    request: Request, settings: Settings, attempt: Attempt, code: str
) -> dict[str, Any]:
    """Redeem the code (client secret + PKCE verifier) and verify the ID token it brings."""
    with _client(settings, _redirect_uri(request, settings)) as client:
        metadata = discover(client, settings)
        try:
            token = client.fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=attempt.verifier,
            )
        except Exception as exc:  # noqa: BLE001 - authlib's OAuthError and httpx2's errors
            log.warning("ui.oidc_token_refused", error=type(exc).__name__)
            raise OidcRefused("the sign-in provider did not accept the sign-in code") from exc
        # Fetched at every sign-in (they are rare): a provider's key rotation needs nothing.
        jwks = _get_json(client, metadata["jwks_uri"])
    id_token = token.get("id_token") if isinstance(token, Mapping) else None
    if not isinstance(id_token, str):
        raise OidcRefused("the sign-in provider sent no ID token")
    return verify_id_token(id_token, jwks, metadata["issuer"], settings, attempt.nonce)


def verify_id_token(
    id_token: str, jwks: dict[str, Any], issuer: str, settings: Settings, nonce: str
) -> dict[str, Any]:
    """The claims of an ID token whose signature, issuer, audience, expiry and nonce hold."""
    try:
        decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=ALGORITHMS)  # type: ignore[arg-type]
        jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": settings.oidc_client_id or ""},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        log.warning("ui.oidc_id_token_refused", error=type(exc).__name__, detail=str(exc)[:120])
        raise OidcRefused("the sign-in provider's ID token did not verify") from exc
    claims = dict(decoded.claims)
    # With several audiences the token must be issued to us (OIDC Core 3.1.3.7).
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != settings.oidc_client_id:
        raise OidcRefused("the sign-in provider's ID token was issued to another client")
    return claims


def _values(raw: object) -> list[str]:
    """A claim as a list of strings: a JSON list, or one string of space/comma-separated
    values."""
    if isinstance(raw, str):
        return raw.replace(",", " ").split()
    if isinstance(raw, list):
        return [v.strip() for v in raw if isinstance(v, str) and v.strip()]
    return []


def principal_from(claims: Mapping[str, Any], settings: Settings) -> tuple[Principal, str]:
    """The principal an ID token's claims make (name, highest mapped role, workflow scope)
    and its subject; raises OidcRefused when a claim the settings need is missing."""
    wanted = settings.oidc_principal_claim
    name = claims.get(wanted)
    if not isinstance(name, str) or not name.strip():
        raise OidcRefused(f"the provider sent no {wanted} claim to name you by")
    name = name.strip()
    if len(name) > 64:
        raise OidcRefused(f"the {wanted} claim is longer than 64 characters")
    if wanted == "email" and claims.get("email_verified") is False:
        raise OidcRefused("the provider says your email address is not verified")
    roles_by_value = settings.oidc_roles()
    roles = {
        roles_by_value[v]
        for v in _values(claims.get(settings.oidc_role_claim))
        if v in roles_by_value
    }
    if not roles:
        raise OidcRefused(
            f"none of your {settings.oidc_role_claim} gives a role in opsgate; ask an admin"
        )
    role = max(roles, key=ROLES.index)
    workflows: frozenset[str] | None = None
    if settings.oidc_scope_claim:
        # Configured means every person is scoped: a token without the claim is refused
        # rather than read as "every workflow".
        scope = _values(claims.get(settings.oidc_scope_claim))
        if not scope:
            raise OidcRefused(f"the provider sent no {settings.oidc_scope_claim} claim")
        workflows = frozenset(scope)
    return Principal(name, role, workflows, via="sso"), str(claims["sub"])
