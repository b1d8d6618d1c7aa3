"""app/identity/apikeys.py: API keys from the environment and from the database key store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.errors import Forbidden, InputError, Unauthorized
from app.identity import apikeys
from tests.support.env import reset_process_state

ENV_KEYS = "ci-bot:requester:k-req-7f2a9c,lead:reviewer:k-rev-3b1e,ops:admin:k-adm-9d4c:with:colons"


@pytest.fixture
def env_keys(sqlite_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_API_KEYS", ENV_KEYS)
    reset_process_state()


@pytest.fixture
def session(sqlite_db: Path) -> Iterator[Session]:
    with session_scope() as s:
        yield s


# --- environment keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name", "role"),
    [
        ("Bearer k-req-7f2a9c", "ci-bot", "requester"),
        ("Bearer k-rev-3b1e", "lead", "reviewer"),
        ("Bearer k-adm-9d4c:with:colons", "ops", "admin"),
        ("bearer k-req-7f2a9c", "ci-bot", "requester"),
        ("Bearer   k-rev-3b1e  ", "lead", "reviewer"),
    ],
)
def test_env_keys_authenticate_with_their_role(
    env_keys: None, session: Session, header: str, name: str, role: str
) -> None:
    principal = apikeys.authenticate(session, header)
    assert (principal.name, principal.role) == (name, role)
    assert principal.actor == f"key:{name}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-key",
        "Bearer k-req-7f2a9",  # a prefix of a real key
        "Bearer k-req-7f2a9cX",
        "Bearer K-REQ-7F2A9C",
        "k-req-7f2a9c",  # no scheme
        "Basic k-req-7f2a9c",
        "Token k-req-7f2a9c",
        "Bearerk-req-7f2a9c",
        "Bearer ci-bot:requester:k-req-7f2a9c",
        "Bearer requester",
        "Bearer ci-bot",
    ],
)
def test_bad_missing_or_non_bearer_headers_are_unauthorized(
    env_keys: None, session: Session, header: str | None
) -> None:
    with pytest.raises(Unauthorized):
        apikeys.authenticate(session, header)


def test_no_keys_configured_means_nobody_gets_in(sqlite_db: Path, session: Session) -> None:
    with pytest.raises(Unauthorized):
        apikeys.authenticate(session, "Bearer ")
    with pytest.raises(Unauthorized):
        apikeys.authenticate(session, "Bearer anything")


# --- the database key store ---------------------------------------------------------------


def _create(name: str, role: str) -> str:
    with session_scope() as s:
        key = apikeys.create(s, name, role, created_by="cli:test@host")
        s.commit()
    return key


def _table_dump() -> list[str]:
    """Every value of every row of api_keys, as text."""
    with session_scope() as s:
        rows = s.execute(text("SELECT * FROM api_keys")).all()
    return [str(v) for row in rows for v in row]


def test_created_key_authenticates_with_its_role(sqlite_db: Path) -> None:
    key = _create("billing-system", "requester")

    with session_scope() as s:
        principal = apikeys.authenticate(s, f"Bearer {key}")

    assert (principal.name, principal.role) == ("billing-system", "requester")
    assert principal.actor == "key:billing-system"


def test_created_keys_are_distinct_and_long(sqlite_db: Path) -> None:
    first, second = _create("a", "requester"), _create("b", "reviewer")
    assert first != second
    assert len(first) >= 40


def test_only_the_sha256_of_a_key_is_stored(sqlite_db: Path) -> None:
    key = _create("billing-system", "admin")

    values = _table_dump()

    assert hashlib.sha256(key.encode()).hexdigest() in values
    assert not any(key in v for v in values)
    # Not the secret part either (the short prefix is public and shown in listings).
    secret_part = key.rsplit("_", 1)[-1]
    assert len(secret_part) >= 32
    assert not any(secret_part in v for v in values)


def test_listing_never_shows_the_key(sqlite_db: Path) -> None:
    key = _create("billing-system", "admin")

    with session_scope() as s:
        listed = apikeys.listing(s)

    assert [(k["name"], k["role"], k["revoked_at"]) for k in listed] == [
        ("billing-system", "admin", None)
    ]
    assert key.startswith(str(listed[0]["prefix"]))
    assert key not in repr(listed)


def test_revoked_key_is_unauthorized(sqlite_db: Path) -> None:
    key = _create("billing-system", "requester")
    other = _create("helpdesk", "requester")

    with session_scope() as s:
        apikeys.revoke(s, "billing-system")
        s.commit()

    with session_scope() as s, pytest.raises(Unauthorized, match="revoked"):
        apikeys.authenticate(s, f"Bearer {key}")
    with session_scope() as s:
        # Revoking one key leaves the others working.
        assert apikeys.authenticate(s, f"Bearer {other}").name == "helpdesk"
        [revoked] = [k for k in apikeys.listing(s) if k["name"] == "billing-system"]
        assert revoked["revoked_at"] is not None


def test_revoking_twice_keeps_the_first_revocation_time(sqlite_db: Path) -> None:
    _create("billing-system", "requester")
    with session_scope() as s:
        apikeys.revoke(s, "billing-system")
        s.commit()
    with session_scope() as s:
        first = apikeys.listing(s)[0]["revoked_at"]
        apikeys.revoke(s, "billing-system")
        s.commit()
    with session_scope() as s:
        assert apikeys.listing(s)[0]["revoked_at"] == first


def test_revoking_an_unknown_key_is_an_input_error(sqlite_db: Path, session: Session) -> None:
    with pytest.raises(InputError, match="nobody"):
        apikeys.revoke(session, "nobody")


def test_duplicate_name_is_an_input_error(sqlite_db: Path) -> None:
    _create("billing-system", "requester")
    with session_scope() as s, pytest.raises(InputError, match="billing-system"):
        apikeys.create(s, "billing-system", "admin", created_by="cli:test@host")


@pytest.mark.parametrize("role", ["root", "Admin", "", "requester "])
def test_unknown_role_is_an_input_error(sqlite_db: Path, session: Session, role: str) -> None:
    with pytest.raises(InputError, match="role"):
        apikeys.create(session, "billing-system", role, created_by="cli:test@host")


def test_env_and_db_keys_work_side_by_side(env_keys: None) -> None:
    key = _create("billing-system", "reviewer")
    with session_scope() as s:
        assert apikeys.authenticate(s, "Bearer k-req-7f2a9c").name == "ci-bot"
        assert apikeys.authenticate(s, f"Bearer {key}").role == "reviewer"


# --- Principal.require --------------------------------------------------------------------


def test_require_passes_for_an_allowed_role() -> None:
    apikeys.Principal("lead", "reviewer").require("reviewer", "admin")
    apikeys.Principal("ops", "admin").require("admin")


@pytest.mark.parametrize(
    ("role", "needed"),
    [("requester", ("reviewer", "admin")), ("reviewer", ("requester",)), ("admin", ("reviewer",))],
)
def test_require_refuses_other_roles(role: str, needed: tuple[str, ...]) -> None:
    with pytest.raises(Forbidden) as caught:
        apikeys.Principal("ci-bot", role).require(*needed)
    message = str(caught.value)
    assert "ci-bot" in message and role in message
    assert all(n in message for n in needed)


# --- workflow scopes ----------------------------------------------------------------------

SCOPED_KEYS = (
    "clerk:reviewer/invoice_exception:k-clerk-51c0,"
    "lead:reviewer/support_refund+it_request:k-lead-8e2d,"
    "ops:admin:k-adm-9d4c"
)


@pytest.fixture
def scoped_env_keys(sqlite_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_API_KEYS", SCOPED_KEYS)
    reset_process_state()


def test_an_unscoped_principal_covers_every_workflow() -> None:
    principal = apikeys.Principal("ops", "admin")

    assert principal.workflows is None
    assert all(principal.covers(w) for w in ("support_refund", "invoice_exception", "anything"))
    principal.require_workflow("invoice_exception")


def test_a_scoped_principal_covers_its_workflows_only() -> None:
    principal = apikeys.Principal("lead", "reviewer", frozenset({"support_refund", "it_request"}))

    assert principal.covers("support_refund") and principal.covers("it_request")
    assert not principal.covers("invoice_exception")
    with pytest.raises(Forbidden) as caught:
        principal.require_workflow("invoice_exception")
    assert str(caught.value) == (
        "key 'lead' may not act on invoice_exception; its scope is it_request, support_refund"
    )


def test_env_keys_carry_their_scope(scoped_env_keys: None, session: Session) -> None:
    clerk = apikeys.authenticate(session, "Bearer k-clerk-51c0")
    lead = apikeys.authenticate(session, "Bearer k-lead-8e2d")
    ops = apikeys.authenticate(session, "Bearer k-adm-9d4c")

    assert clerk == apikeys.Principal("clerk", "reviewer", frozenset({"invoice_exception"}))
    assert lead.workflows == frozenset({"support_refund", "it_request"})
    assert ops.workflows is None


def test_principal_for_key_takes_a_raw_key(scoped_env_keys: None, session: Session) -> None:
    assert apikeys.principal_for_key(session, "k-clerk-51c0") == apikeys.Principal(
        "clerk", "reviewer", frozenset({"invoice_exception"})
    )
    assert apikeys.principal_for_key(session, "Bearer k-clerk-51c0") is None
    assert apikeys.principal_for_key(session, "k-clerk-51c") is None
    assert apikeys.principal_for_key(session, "") is None


def test_a_created_key_keeps_its_scope(sqlite_db: Path) -> None:
    with session_scope() as s:
        key = apikeys.create(
            s,
            "finance",
            "reviewer",
            created_by="cli:test@host",
            workflows=["invoice_exception", "invoice_exception"],
        )
        apikeys.create(s, "support", "reviewer", created_by="cli:test@host")
        s.commit()

    with session_scope() as s:
        principal = apikeys.authenticate(s, f"Bearer {key}")
        listed = {k["name"]: k["workflows"] for k in apikeys.listing(s)}

    assert principal == apikeys.Principal("finance", "reviewer", frozenset({"invoice_exception"}))
    assert listed == {"finance": ["invoice_exception"], "support": None}


def test_an_empty_scope_is_an_input_error(sqlite_db: Path, session: Session) -> None:
    with pytest.raises(InputError, match="at least one workflow"):
        apikeys.create(session, "nobody", "reviewer", created_by="cli:test@host", workflows=[])


def test_principal_for_digest_finds_live_keys_only(scoped_env_keys: None) -> None:
    stored = _create("billing-system", "requester")
    revoked = _create("old-system", "requester")
    with session_scope() as s:
        apikeys.revoke(s, "old-system")
        s.commit()

    with session_scope() as s:
        by_env = apikeys.principal_for_digest(s, apikeys.key_digest("k-clerk-51c0"))
        by_db = apikeys.principal_for_digest(s, apikeys.key_digest(stored))
        gone = apikeys.principal_for_digest(s, apikeys.key_digest(revoked))
        unknown = apikeys.principal_for_digest(s, apikeys.key_digest("k-nobody"))
        # The raw key is not a digest.
        raw = apikeys.principal_for_digest(s, "k-clerk-51c0")

    assert by_env == apikeys.Principal("clerk", "reviewer", frozenset({"invoice_exception"}))
    assert by_db == apikeys.Principal("billing-system", "requester")
    assert gone is None and unknown is None and raw is None


def test_key_digest_is_the_stored_sha256() -> None:
    assert apikeys.key_digest("abc") == hashlib.sha256(b"abc").hexdigest()
