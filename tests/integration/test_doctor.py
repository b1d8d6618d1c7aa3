"""`opsgate doctor` against real PostgreSQL and Redis: what passes, what fails and how the
failure says what to do; never a secret in its output."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.core.db import schema_revisions
from tests.support.env import PG_ADMIN_URL, reset_process_state
from tests.support.model_server import ModelServer
from tests.support.processes import free_port

# A production configuration with real-looking values (every one a secret to keep out of
# the output).
PRODUCTION = {
    "OPSGATE_ENV": "production",
    "OPSGATE_APPROVAL_KEYS": "k2026a:0123456789abcdef0123456789abcdef",
    "OPSGATE_SESSION_SECRET": "0123456789abcdef0123456789abcdef-session",
    "OPSGATE_STRIPE_API_BASE": "https://api.stripe.com",
    "OPSGATE_STRIPE_API_KEY": "rk_live_realkey1234567",
    "OPSGATE_ZENDESK_API_BASE": "https://acme.zendesk.com",
    "OPSGATE_ZENDESK_EMAIL": "opsgate-agent@acme.com",
    "OPSGATE_ZENDESK_API_TOKEN": "zd-real-token-4567890",
    "OPSGATE_SALESFORCE_API_BASE": "https://acme.my.salesforce.com",
    "OPSGATE_SALESFORCE_ACCESS_TOKEN": "sf-real-token-7890123",
    "OPSGATE_OKTA_API_BASE": "https://acme.okta.com",
    "OPSGATE_OKTA_API_TOKEN": "okta-real-token-0123456",
    "OPSGATE_ZENDESK_WEBHOOK_SECRET": "zd-webhook-secret-abcdef",
    "OPSGATE_API_KEYS": "crm:requester:crm-key-0123456789abcdef",
    "FLOWER_BASIC_AUTH": "admin:flower-pass-0123456789",
}
SECRET_VALUES = [
    "0123456789abcdef0123456789abcdef",
    "rk_live_realkey1234567",
    "zd-real-token-4567890",
    "sf-real-token-7890123",
    "okta-real-token-0123456",
    "zd-webhook-secret-abcdef",
    "crm-key-0123456789abcdef",
    "flower-pass-0123456789",
    "sk-test",
]


def doctor(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run `opsgate doctor --json` and `opsgate doctor` in this process with `env` set."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_process_state()
    runner = CliRunner()
    as_json = runner.invoke(cli, ["doctor", "--json"])
    text = runner.invoke(cli, ["doctor"])
    assert as_json.exit_code == text.exit_code, text.output
    for secret in SECRET_VALUES:
        assert secret not in as_json.output + text.output
    return text.exit_code, json.loads(as_json.output)["checks"], text.output


def finding(checks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The one finding of this check."""
    found = [c for c in checks if c["check"] == name]
    assert len(found) == 1, checks
    return found[0]


@pytest.fixture
def empty_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A PostgreSQL database that was never migrated."""
    name = f"opsgate_doctor_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_migrated_production_deployment_passes(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, text = doctor(monkeypatch, **PRODUCTION)

    assert code == 0, text
    assert not [c for c in checks if c["status"] == "fail"]
    assert finding(checks, "mode")["status"] == "ok"
    head = schema_revisions()[1]
    assert f"at schema {head} (head)" in finding(checks, "database")["message"]
    assert finding(checks, "redis")["status"] == "ok"
    assert finding(checks, "FLOWER_BASIC_AUTH")["status"] == "ok"
    assert all(line[:2] in ("✓ ", "! ") for line in text.splitlines())


def test_development_passes_with_a_warning_that_it_is_not_for_production(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, text = doctor(monkeypatch)

    assert code == 0, text
    mode = finding(checks, "mode")
    assert mode["status"] == "warn" and "not for production" in mode["message"]
    assert finding(checks, "OPSGATE_APPROVAL_KEYS")["status"] == "warn"


def test_an_unmigrated_database_names_db_upgrade(
    pg_env: dict[str, str], empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, text = doctor(monkeypatch, OPSGATE_DATABASE_URL=empty_database)

    assert code == 1
    database = finding(checks, "database")
    assert database["status"] == "fail" and "run: opsgate db upgrade" in database["message"]
    assert "✗ database: " in text and "opsgate db upgrade" in text


def test_an_unreachable_database_is_named_with_the_fix(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, _ = doctor(
        monkeypatch, OPSGATE_DATABASE_URL="postgresql://postgres:pw-x@127.0.0.1:1/nope"
    )

    database = finding(checks, "database")
    assert code == 1 and database["status"] == "fail"
    assert "postgresql+psycopg://postgres:***@127.0.0.1:1/nope" in database["message"]
    assert "OPSGATE_DATABASE_URL" in database["fix"] and "pw-x" not in database["message"]


def test_an_unreachable_redis_names_the_url(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    code, checks, text = doctor(monkeypatch, OPSGATE_REDIS_URL=url)

    assert code == 1
    redis_finding = finding(checks, "redis")
    assert redis_finding["status"] == "fail" and url in redis_finding["message"]
    assert f"✗ redis: redis unreachable at {url}" in text


@pytest.mark.parametrize(
    ("variable", "placeholder"),
    [
        ("OPSGATE_STRIPE_API_KEY", "sk_test_sandbox"),
        ("OPSGATE_OKTA_API_TOKEN", "sandbox-token"),
        ("OPSGATE_APPROVAL_KEYS", "dev:dev-signing-key"),
        ("OPSGATE_SESSION_SECRET", "dev-session-secret"),
        ("OPSGATE_ZENDESK_EMAIL", "agent@opsgate.example"),
        ("OPSGATE_ZENDESK_WEBHOOK_SECRET", "changeme"),
        ("FLOWER_BASIC_AUTH", "admin:admin"),
    ],
)
def test_production_with_a_placeholder_fails_naming_the_variable(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, variable: str, placeholder: str
) -> None:
    code, checks, text = doctor(monkeypatch, **{**PRODUCTION, variable: placeholder})

    assert code == 1
    failed = [c for c in checks if c["status"] == "fail"]
    assert [c["check"] for c in failed] == [variable], text
    assert failed[0]["fix"] and f"✗ {variable}: " in text


def test_a_setting_no_mode_accepts_is_one_finding(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, text = doctor(monkeypatch, OPSGATE_SALESFORCE_ORG_ID="00Dnope")

    assert code == 1 and len(checks) == 1
    assert text.startswith("✗ settings: invalid setting OPSGATE_SALESFORCE_ORG_ID: ")


def test_a_model_endpoint_that_answers_passes(
    pg_env: dict[str, str], model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, text = doctor(monkeypatch)

    models = [c for c in checks if c["check"].startswith("models")]
    assert code == 0, text
    assert models and all(c["status"] == "ok" for c in models)
    assert any(model_server.url in c["message"] for c in models)


def test_a_model_endpoint_that_does_not_answer_fails(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"

    code, checks, _ = doctor(monkeypatch, OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-test")

    models = finding(checks, "models (OPENAI_BASE_URL)")
    assert code == 1 and models["status"] == "fail" and url in models["message"]


@pytest.mark.parametrize(("mode", "status"), [("production", "fail"), ("development", "warn")])
def test_a_key_scoped_to_an_unknown_workflow_is_named(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, mode: str, status: str
) -> None:
    keys = (
        "crm:requester/support_refund:crm-key-0123456789abcdef,"
        "clerk:reviewer/invoice_exception+payroll:crm-key-0123456789abcdef-2"
    )
    code, checks, text = doctor(
        monkeypatch, **{**PRODUCTION, "OPSGATE_ENV": mode, "OPSGATE_API_KEYS": keys}
    )

    scopes = finding(checks, "OPSGATE_API_KEYS scopes")
    assert scopes["status"] == status
    assert "'payroll' (key 'clerk')" in scopes["message"]
    assert "invoice_exception, it_request, support_refund" in scopes["fix"]
    assert code == (1 if mode == "production" else 0), text


def test_keys_scoped_to_registered_workflows_pass(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = "clerk:reviewer/invoice_exception+it_request:crm-key-0123456789abcdef"
    code, checks, text = doctor(monkeypatch, **{**PRODUCTION, "OPSGATE_API_KEYS": keys})

    assert code == 0, text
    assert finding(checks, "OPSGATE_API_KEYS scopes") == {
        "check": "OPSGATE_API_KEYS scopes",
        "status": "ok",
        "message": "1 scoped key(s)",
        "fix": "",
    }


OIDC = {
    "OPSGATE_OIDC_ISSUER": "https://acme.okta.com/oauth2/default",
    "OPSGATE_OIDC_CLIENT_ID": "0oa-opsgate-console",
    "OPSGATE_OIDC_CLIENT_SECRET": "oidc-client-secret-0123456789",
    "OPSGATE_OIDC_ROLE_MAP": "opsgate-reviewers=reviewer,opsgate-admins=admin",
}


def test_oidc_not_configured_is_said(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, checks, _ = doctor(monkeypatch, **PRODUCTION)

    oidc = finding(checks, "OPSGATE_OIDC_ISSUER")
    assert oidc["status"] == "ok" and "not configured" in oidc["message"]


def test_oidc_configured_in_production_passes_without_showing_the_secret(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, text = doctor(monkeypatch, **PRODUCTION, **OIDC)

    assert code == 0, text
    oidc = finding(checks, "OPSGATE_OIDC_ISSUER")
    assert oidc["status"] == "ok" and "https://acme.okta.com/oauth2/default" in oidc["message"]
    assert "oidc-client-secret-0123456789" not in text + json.dumps(checks)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OPSGATE_OIDC_ISSUER", "http://acme.okta.com/oauth2/default", "https URL"),
        ("OPSGATE_OIDC_CLIENT_SECRET", "", "OPSGATE_OIDC_CLIENT_SECRET"),
        ("OPSGATE_OIDC_ROLE_MAP", "", "OPSGATE_OIDC_ROLE_MAP"),
    ],
)
def test_oidc_in_production_needs_https_and_a_client_secret(
    pg_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    named: str,
) -> None:
    code, checks, text = doctor(monkeypatch, **PRODUCTION, **{**OIDC, variable: value})

    assert code == 1
    failed = [c for c in checks if c["status"] == "fail"]
    assert [c["check"] for c in failed] == ["OPSGATE_OIDC_ISSUER"], text
    assert named in failed[0]["message"]
    assert "oidc-client-secret-0123456789" not in text


# --- the reviewers' webhook ---------------------------------------------------------------------

WEBHOOK = "https://hooks.slack.com/services/T0123/B0456/webhook-token-0123456789"


def test_no_webhook_is_a_warning_that_nothing_is_notified(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, _ = doctor(monkeypatch, **PRODUCTION)

    webhook = finding(checks, "OPSGATE_NOTIFY_WEBHOOK_URL")
    assert code == 0 and webhook["status"] == "warn" and "no notifications" in webhook["message"]


def test_an_https_webhook_passes_showing_only_its_host(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, checks, text = doctor(
        monkeypatch,
        **PRODUCTION,
        OPSGATE_NOTIFY_WEBHOOK_URL=WEBHOOK,
        OPSGATE_CONSOLE_URL="https://opsgate.acme.com",
    )

    webhook = finding(checks, "OPSGATE_NOTIFY_WEBHOOK_URL")
    assert code == 0 and webhook["status"] == "ok" and "hooks.slack.com" in webhook["message"]
    assert "webhook-token" not in text and "/services/" not in text
    assert finding(checks, "OPSGATE_CONSOLE_URL")["status"] == "ok"


def test_an_http_webhook_fails_in_production_and_a_missing_console_url_is_named(
    pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = WEBHOOK.replace("https://", "http://")

    code, checks, text = doctor(monkeypatch, **PRODUCTION, OPSGATE_NOTIFY_WEBHOOK_URL=plain)

    webhook = finding(checks, "OPSGATE_NOTIFY_WEBHOOK_URL")
    assert code == 1 and webhook["status"] == "fail" and "https://" in webhook["fix"]
    assert "webhook-token" not in text
    console = finding(checks, "OPSGATE_CONSOLE_URL")
    assert console["status"] == "warn" and "no link" in console["message"]
    # Development accepts http (a local receiver)
    code, checks, _ = doctor(monkeypatch, OPSGATE_ENV="development")
    assert finding(checks, "OPSGATE_NOTIFY_WEBHOOK_URL")["status"] == "ok"
