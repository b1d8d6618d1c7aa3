"""The console's OIDC sign-in against a small local OpenID provider, on PostgreSQL: the code
flow with PKCE, state and nonce, ID-token checks, claims mapped to a principal, scope and
separation of duties for a reviewer signed in through the provider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.models import Escalation, UiSession
from tests.support.console import hidden
from tests.support.env import reset_process_state
from tests.support.jobs import escalated_refund
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, running

pytestmark = pytest.mark.integration

ALICE = {
    "sub": "00u-alice",
    "email": "alice@example.com",
    "email_verified": True,
    "preferred_username": "alice.smith",
    "groups": ["everyone", "opsgate-reviewers"],
}


@pytest.fixture
def provider(pg_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    with running(ALICE) as found:
        monkeypatch.setenv("OPSGATE_OIDC_ISSUER", found.issuer)
        monkeypatch.setenv("OPSGATE_OIDC_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("OPSGATE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        monkeypatch.setenv(
            "OPSGATE_OIDC_ROLE_MAP", "opsgate-reviewers=reviewer,opsgate-admins=admin"
        )
        yield found


def console() -> TestClient:
    reset_process_state()
    from app.api.main import create_app

    return TestClient(create_app())


def sso(client: TestClient, *, state: str | None = None) -> httpx.Response:
    """Click "Sign in with single sign-on", let the provider answer, follow it back."""
    page = client.get("/ui/sign-in")
    assert 'id="sign-in-sso"' in page.text
    start = client.get("/ui/sign-in/oidc", follow_redirects=False)
    assert start.status_code == 303, start.text
    assert "SameSite=lax" in start.headers["set-cookie"]
    authorize = start.headers["location"]
    assert "code_challenge_method=S256" in authorize and "nonce=" in authorize
    back = httpx.get(authorize, follow_redirects=False)
    assert back.status_code == 302, back.text
    callback = back.headers["location"]
    assert callback.startswith("http://testserver/ui/sign-in/oidc/callback?")
    if state is not None:
        callback = callback.split("&state=")[0] + (f"&state={state}" if state else "")
    return client.get(callback, follow_redirects=False)


def sessions_opened() -> list[UiSession]:
    with session_scope() as s:
        rows = list(s.scalars(select(UiSession)))
        s.expunge_all()
        return rows


def test_a_reviewer_in_the_mapped_group_signs_in(provider: Provider) -> None:
    with console() as client:
        answer = sso(client)

        assert answer.status_code == 303 and answer.headers["location"] == "/ui/escalations"
        assert "SameSite=strict" in answer.headers["set-cookie"]
        page = client.get("/ui/escalations")
        assert page.status_code == 200 and 'id="signed-in-as">alice@example.com<' in page.text
    (row,) = sessions_opened()
    assert (row.source, row.principal, row.role, row.subject) == (
        "oidc",
        "alice@example.com",
        "reviewer",
        "00u-alice",
    )
    assert row.key_sha256 is None and row.workflows is None


def test_the_highest_mapped_role_wins(provider: Provider) -> None:
    provider.claims["groups"] = ["opsgate-reviewers", "opsgate-admins"]
    with console() as client:
        assert sso(client).status_code == 303
    assert [r.role for r in sessions_opened()] == ["admin"]


def test_a_person_with_no_mapped_group_is_refused(provider: Provider) -> None:
    provider.claims["groups"] = ["everyone"]
    with console() as client:
        answer = sso(client)
        assert answer.status_code == 403 and "gives a role in opsgate" in answer.text
        assert client.get("/ui/escalations", follow_redirects=False).status_code == 303
    assert sessions_opened() == []


@pytest.mark.parametrize("misbehaviour", ["aud", "nonce", "expired", "signature", "issuer"])
def test_a_bad_id_token_is_refused(provider: Provider, misbehaviour: Any) -> None:
    provider.misbehave = misbehaviour
    with console() as client:
        answer = sso(client)
        assert answer.status_code == 403, answer.text
        assert "ID token did not verify" in answer.text
        assert "opsgate_session=" not in answer.headers.get("set-cookie", "")
    assert provider.token_requests == 1
    assert sessions_opened() == []


@pytest.mark.parametrize("state", ["", "forged-state"])
def test_a_wrong_or_missing_state_is_refused(provider: Provider, state: str) -> None:
    with console() as client:
        answer = sso(client, state=state)
        assert answer.status_code == 403 and "not started here" in answer.text
    assert provider.token_requests == 0
    assert sessions_opened() == []


def test_a_callback_without_the_attempt_cookie_is_refused(provider: Provider) -> None:
    # A code and state delivered to another browser (login CSRF): no attempt cookie there.
    with console() as client:
        start = client.get("/ui/sign-in/oidc", follow_redirects=False)
        back = httpx.get(start.headers["location"], follow_redirects=False)
    with console() as other:
        answer = other.get(back.headers["location"], follow_redirects=False)
        assert answer.status_code == 403
    assert sessions_opened() == []


def test_the_principal_claim_is_configurable(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_OIDC_PRINCIPAL_CLAIM", "preferred_username")
    with console() as client:
        assert sso(client).status_code == 303
        assert 'id="signed-in-as">alice.smith<' in client.get("/ui/escalations").text
    assert [r.principal for r in sessions_opened()] == ["alice.smith"]


def test_the_scope_claim_scopes_the_session(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_OIDC_SCOPE_CLAIM", "opsgate_workflows")
    provider.claims["opsgate_workflows"] = ["invoice_exception"]
    _, esc_id = escalated_refund(requester="bob@example.com")
    with console() as client:
        assert sso(client).status_code == 303
        queue = client.get("/ui/escalations")
        assert queue.status_code == 200
        assert f'href="/ui/escalations/{esc_id}"' not in queue.text
        assert client.get(f"/ui/escalations/{esc_id}").status_code == 404
    assert [r.workflows for r in sessions_opened()] == [["invoice_exception"]]


def test_a_configured_scope_claim_missing_from_the_token_is_refused(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_OIDC_SCOPE_CLAIM", "opsgate_workflows")
    with console() as client:
        assert sso(client).status_code == 403
    assert sessions_opened() == []


def test_an_oidc_reviewer_cannot_decide_their_own_job(provider: Provider) -> None:
    _, esc_id = escalated_refund(requester="alice@example.com")
    with console() as client:
        assert sso(client).status_code == 303
        page = client.get(f"/ui/escalations/{esc_id}")
        assert page.status_code == 200
        answer = client.post(
            f"/ui/escalations/{esc_id}/decision",
            data={
                "decision": "approve",
                "confirm": "yes",
                "csrf_token": hidden(page.text, "csrf_token"),
            },
            follow_redirects=False,
        )
        assert answer.status_code == 403 and "separation of duties" in answer.text
    with session_scope() as s:
        esc = s.get(Escalation, esc_id)
        assert esc is not None and esc.decision is None


def test_an_oidc_reviewer_decides_as_sso(provider: Provider) -> None:
    _, esc_id = escalated_refund(requester="bob@example.com")
    with console() as client:
        assert sso(client).status_code == 303
        page = client.get(f"/ui/escalations/{esc_id}")
        answer = client.post(
            f"/ui/escalations/{esc_id}/claim",
            data={"csrf_token": hidden(page.text, "csrf_token")},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
    with session_scope() as s:
        esc = s.get(Escalation, esc_id)
        assert esc is not None and esc.claimed_by == "sso:alice@example.com"


def test_sign_out_ends_an_oidc_session(provider: Provider) -> None:
    with console() as client:
        assert sso(client).status_code == 303
        page = client.get("/ui/escalations")
        client.post("/ui/sign-out", data={"csrf_token": hidden(page.text, "csrf_token")})
        assert client.get("/ui/escalations", follow_redirects=False).status_code == 303
    assert [r.end_reason for r in sessions_opened()] == ["signed_out"]


def test_without_oidc_settings_there_is_no_sso(pg_env: Any) -> None:
    with console() as client:
        assert 'id="sign-in-sso"' not in client.get("/ui/sign-in").text
        assert client.get("/ui/sign-in/oidc", follow_redirects=False).status_code == 404
