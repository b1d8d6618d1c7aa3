"""app/settings.py: database URL resolution, production guards, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.settings import Settings, get_settings

REAL = {
    "OPSGATE_DATABASE_URL": "postgresql://opsgate:pw@db:5432/opsgate",
    "OPSGATE_REDIS_URL": "redis://redis:6379/0",
    "OPSGATE_STRIPE_API_KEY": "rk_live_realkey123",
    "OPSGATE_ZENDESK_API_TOKEN": "zd-real-token-456",
    "OPSGATE_APPROVAL_KEYS": "k1:0123456789abcdef0123456789abcdef",
    "OPSGATE_SESSION_SECRET": "s" * 40,
}


def test_unset_database_url_is_sqlite_under_home(clean_env: Path) -> None:
    url = Settings().resolved_database_url()

    assert url == f"sqlite:///{(clean_env / 'var').resolve() / 'opsgate.db'}"


def test_empty_database_url_means_unset(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_DATABASE_URL", "")

    assert Settings().resolved_database_url().startswith("sqlite:///")


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u:p@h/db?sslmode=require", "postgresql+psycopg://u:p@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////srv/opsgate.db", "sqlite:////srv/opsgate.db"),
    ],
)
def test_database_url_gets_the_psycopg3_driver(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, given: str, resolved: str
) -> None:
    monkeypatch.setenv("OPSGATE_DATABASE_URL", given)

    assert Settings().resolved_database_url() == resolved


def test_production_refuses_placeholders_and_embedded_servers(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_ENV", "production")

    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    for name in ("stripe_api_key", "zendesk_api_token", "database_url", "redis_url"):
        assert name in message


@pytest.mark.parametrize("missing", sorted(REAL))
def test_production_names_only_what_is_missing(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("OPSGATE_ENV", "production")
    for name, value in REAL.items():
        if name != missing:
            monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value).split("production settings need real values for:")[1]
    named = {
        n
        for n in (
            "stripe_api_key",
            "zendesk_api_token",
            "approval_keys",
            "session_secret",
            "database_url",
            "redis_url",
        )
        if n in message
    }
    assert named == {missing.removeprefix("OPSGATE_").lower()}


@pytest.mark.parametrize("placeholder", ["changeme", "sk_test_sandbox", ""])
def test_production_refuses_placeholder_stripe_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, placeholder: str
) -> None:
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPSGATE_ENV", "production")
    monkeypatch.setenv("OPSGATE_STRIPE_API_KEY", placeholder)

    with pytest.raises(ValidationError, match="stripe_api_key"):
        Settings()


def test_production_with_real_values_loads(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPSGATE_ENV", "production")

    settings = Settings()

    assert settings.environment == "production"
    assert settings.resolved_database_url() == "postgresql+psycopg://opsgate:pw@db:5432/opsgate"


def test_production_refuses_the_development_approval_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPSGATE_ENV", "production")
    for weak in ("dev:dev-signing-key", "k1:short"):
        monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", weak)
        with pytest.raises(ValidationError, match="approval_keys"):
            Settings()


def test_production_refuses_an_empty_database_url(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPSGATE_ENV", "production")
    monkeypatch.setenv("OPSGATE_DATABASE_URL", "")

    with pytest.raises(ValidationError, match="database_url"):
        Settings()


def test_development_accepts_the_defaults(clean_env: Path) -> None:
    settings = Settings()

    assert settings.environment == "development"
    assert settings.database_url is None and settings.redis_url is None


def test_secrets_are_secretstr_and_stay_out_of_repr(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "OPSGATE_STRIPE_API_KEY": "rk_live_supersecret1",
        "OPSGATE_ZENDESK_API_TOKEN": "zd_supersecret2",
        "OPSGATE_ZENDESK_WEBHOOK_SECRET": "whsec_supersecret3,whsec_supersecret4",
        "OPSGATE_API_KEYS": "ops:admin:key_supersecret5",
        "OPSGATE_API_KEY": "key_supersecret6",
        "OPENAI_API_KEY": "sk-supersecret7",
        "SENTRY_DSN": "https://supersecret8@sentry.example/1",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    for field in (
        "stripe_api_key",
        "zendesk_api_token",
        "zendesk_webhook_secret",
        "api_keys",
        "api_key",
        "openai_api_key",
        "sentry_dsn",
    ):
        assert isinstance(getattr(settings, field), SecretStr), field
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "supersecret" not in shown
    assert settings.stripe_api_key.get_secret_value() == "rk_live_supersecret1"


def test_get_settings_is_cached_until_cleared(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = get_settings()
    monkeypatch.setenv("OPSGATE_DATABASE_URL", "postgres://x@h/db")

    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().database_url == "postgres://x@h/db"


def test_oidc_role_map_parses_and_refuses_unknown_roles(clean_env: Path) -> None:
    settings = Settings(OPSGATE_OIDC_ROLE_MAP="opsgate-reviewers=reviewer, Opsgate.Admin=admin")
    assert settings.oidc_roles() == {"opsgate-reviewers": "reviewer", "Opsgate.Admin": "admin"}
    with pytest.raises(ValidationError, match=r"\(fix: e.g. OPSGATE_OIDC_ROLE_MAP="):
        Settings(OPSGATE_OIDC_ROLE_MAP="opsgate-reviewers=boss")


def test_oidc_is_on_with_an_issuer_and_a_client_id(clean_env: Path) -> None:
    assert not Settings().oidc_configured
    settings = Settings(
        OPSGATE_OIDC_ISSUER="http://127.0.0.1:9000",
        OPSGATE_OIDC_CLIENT_ID="console",
        OPSGATE_OIDC_ROLE_MAP="g=reviewer",
    )
    assert settings.oidc_configured and settings.oidc_problems(production=False) == []
    problems = settings.oidc_problems(production=True)
    assert any("https" in p for p in problems)
    assert any("OPSGATE_OIDC_CLIENT_SECRET" in p for p in problems)
    with pytest.raises(ValidationError, match="lacks openid"):
        Settings(OPSGATE_OIDC_SCOPES="email profile")
