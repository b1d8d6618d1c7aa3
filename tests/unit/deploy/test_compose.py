"""docker-compose.yml is production by default: Compose itself refuses to render it until
every secret production mode needs is set; the development override renders with none."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.env import ROOT

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(
    COMPOSE is None,
    reason="docker-compose is not installed (.ci/run installs it: apt-get install docker-compose)",
)

# What a production deployment must set (docker-compose.yml refuses to render without each).
SECRETS = {
    "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
    "OPSGATE_APPROVAL_KEYS": "k1:0123456789abcdef0123456789abcdef",
    "OPSGATE_SESSION_SECRET": "0123456789abcdef0123456789abcdef-session",
    "FLOWER_BASIC_AUTH": "admin:0123456789abcdef",
    "OPSGATE_STRIPE_API_KEY": "rk_live_realkey123",
    "OPSGATE_ZENDESK_EMAIL": "opsgate-agent@acme.com",
    "OPSGATE_ZENDESK_API_TOKEN": "zd-real-token-456",
    "OPSGATE_SALESFORCE_ACCESS_TOKEN": "sf-real-token-789",
    "OPSGATE_OKTA_API_TOKEN": "okta-real-token-012",
    "OPSGATE_ZENDESK_API_BASE": "https://acme.zendesk.com",
    "OPSGATE_SALESFORCE_API_BASE": "https://acme.my.salesforce.com",
    "OPSGATE_OKTA_API_BASE": "https://acme.okta.com",
}
DEV = ["--env-file", "config/compose.dev.env", "-f", "docker-compose.yml"]
DEV += ["-f", "docker-compose.dev.yml"]


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real docker-compose in the project root with only `env` (and PATH) set."""
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_env_file_is_left_in_the_project_root() -> None:
    # Compose reads ./.env on its own; one in the root would undo production by default.
    assert not (ROOT / ".env").exists()


def test_production_renders_with_every_secret_and_in_production_mode() -> None:
    proc = compose("config", env=SECRETS)

    assert proc.returncode == 0, proc.stderr
    assert "OPSGATE_ENV: production" in proc.stdout
    assert "OPSGATE_ENV: development" not in proc.stdout
    assert "sandbox:8765" not in proc.stdout  # no service points at the sandbox


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_production_refuses_to_render_without_a_secret(missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}

    proc = compose("config", "-q", env=env)

    assert proc.returncode != 0
    assert f"set {missing}" in proc.stderr


def test_an_empty_secret_counts_as_missing() -> None:
    proc = compose("config", "-q", env={**SECRETS, "OPSGATE_APPROVAL_KEYS": ""})

    assert proc.returncode != 0 and "set OPSGATE_APPROVAL_KEYS" in proc.stderr


def test_intakes_a_team_does_not_use_stay_optional() -> None:
    proc = compose("config", env=SECRETS)

    assert proc.returncode == 0, proc.stderr
    for optional in ("OPSGATE_ZENDESK_WEBHOOK_SECRET", "OPSGATE_SALESFORCE_ORG_ID"):
        assert f"{optional}: null" in proc.stdout or f"{optional}:\n" in proc.stdout


def test_the_development_override_renders_with_no_secrets_set() -> None:
    proc = compose(*DEV, "config")

    assert proc.returncode == 0, proc.stderr
    assert "OPSGATE_ENV: production" not in proc.stdout
    assert "OPSGATE_ENV: development" in proc.stdout
    assert "http://sandbox:8765" in proc.stdout
    services = compose(*DEV, "config", "--services").stdout.split()
    assert "sandbox" in services and "api" in services


def test_development_values_are_the_placeholders_production_refuses() -> None:
    from app.settings import _PLACEHOLDER_SECRETS

    values = dict(
        line.split("=", 1)
        for line in (ROOT / "config" / "compose.dev.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert values["OPSGATE_APPROVAL_KEYS"].split(":", 1)[1] in _PLACEHOLDER_SECRETS
    assert values["OPSGATE_SESSION_SECRET"] in _PLACEHOLDER_SECRETS
    for name in ("OPSGATE_STRIPE_API_KEY", "OPSGATE_ZENDESK_API_TOKEN", "OPSGATE_OKTA_API_TOKEN"):
        assert values[name] in _PLACEHOLDER_SECRETS


def test_every_secret_compose_requires_is_named_in_the_deploy_guide() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name in SECRETS:
        assert name in guide, name


def test_compose_requires_what_production_settings_refuse() -> None:
    # Every setting whose default production mode refuses has no default in compose.
    text = (ROOT / "docker-compose.yml").read_text()
    for name in (
        "OPSGATE_STRIPE_API_KEY",
        "OPSGATE_ZENDESK_API_TOKEN",
        "OPSGATE_SALESFORCE_ACCESS_TOKEN",
        "OPSGATE_OKTA_API_TOKEN",
        "OPSGATE_APPROVAL_KEYS",
        "OPSGATE_SESSION_SECRET",
        "POSTGRES_PASSWORD",
    ):
        assert f"${{{name}:?" in text, name
        assert f"${{{name}:-" not in text, name
