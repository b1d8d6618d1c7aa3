"""`opsgate doctor`: check a deployment's configuration and the services it needs.

Each check reports one line: what it found and, for a problem, the fix. No secret value is
ever printed (URLs are shown with their passwords masked)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from app.settings import _PLACEHOLDER_SECRETS, _SANDBOX, Settings, parse_signing_keys

Status = Literal["ok", "warn", "fail"]
_MARKS = {"ok": "✓", "warn": "!", "fail": "✗"}
# Downstream systems: the token each tool speaks with, and the sandbox's placeholders.
_SYSTEMS = {
    "stripe": "OPSGATE_STRIPE_API_KEY",
    "zendesk": "OPSGATE_ZENDESK_API_TOKEN",
    "salesforce": "OPSGATE_SALESFORCE_ACCESS_TOKEN",
    "okta": "OPSGATE_OKTA_API_TOKEN",
}
_SANDBOX_HOSTS = ("127.0.0.1:8765", "localhost:8765", "sandbox:8765")
_PLACEHOLDER_EMAILS = {"agent@opsgate.example"}
_MODEL_TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    """One check's result: `fix` says what to do when the status is not ok."""

    check: str
    status: Status
    message: str
    fix: str = ""

    def line(self) -> str:
        """`✗ check: message — fix`."""
        fix = f" — {self.fix}" if self.fix and self.status != "ok" else ""
        return f"{_MARKS[self.status]} {self.check}: {self.message}{fix}"


def _load_settings() -> tuple[Settings | None, bool, list[Finding]]:
    """The settings and whether they are production's; a value no mode accepts is a finding
    and ends the checks. Production's refusals (placeholders, embedded servers) are checked
    one variable at a time below, on the same values read in development mode."""
    try:
        settings = Settings()
        return settings, settings.environment == "production", []
    except ValidationError as exc:
        if any(e["loc"] for e in exc.errors()):
            from app.cli import settings_error_line

            line = settings_error_line(exc).removeprefix("opsgate: ")
            return None, False, [Finding("settings", "fail", line)]
        # Only the production refusals failed (a model-level error has no location).
        return Settings(OPSGATE_ENV="development"), True, []


def check_mode(settings: Settings, production: bool) -> Iterator[Finding]:
    """Production or development."""
    if production:
        yield Finding("mode", "ok", "production")
    else:
        yield Finding(
            "mode",
            "warn",
            "development: placeholder secrets and embedded servers are accepted; not for "
            "production",
            "set OPSGATE_ENV=production on a deployment",
        )


def check_signing_keys(settings: Settings, production: bool) -> Iterator[Finding]:
    """Approval signing keys: long, not placeholders, distinct key ids."""
    bad: Status = "fail" if production else "warn"
    pairs = parse_signing_keys(settings.approval_keys.get_secret_value())
    fix = "set OPSGATE_APPROVAL_KEYS=kid:secret with secrets from `openssl rand -hex 32`"
    problems = []
    for kid, secret in pairs:
        if secret in _PLACEHOLDER_SECRETS:
            problems.append(f"key {kid!r} is the development placeholder")
        elif len(secret) < 16:
            problems.append(f"key {kid!r} is {len(secret)} characters, 16+ needed")
    kids = [kid for kid, _ in pairs]
    if len(set(kids)) != len(kids):
        problems.append("a key id appears twice")
    if problems:
        yield Finding("OPSGATE_APPROVAL_KEYS", bad, "; ".join(problems), fix)
    else:
        yield Finding(
            "OPSGATE_APPROVAL_KEYS", "ok", f"{len(pairs)} key(s), signing with {kids[0]!r}"
        )


def check_session_secret(settings: Settings, production: bool) -> Iterator[Finding]:
    """The reviewer console's session secret: long and not the placeholder."""
    bad: Status = "fail" if production else "warn"
    secret = settings.session_secret.get_secret_value()
    fix = "set OPSGATE_SESSION_SECRET=$(openssl rand -hex 32)"
    if secret in _PLACEHOLDER_SECRETS:
        yield Finding("OPSGATE_SESSION_SECRET", bad, "the development placeholder", fix)
    elif len(secret) < 32:
        yield Finding("OPSGATE_SESSION_SECRET", bad, f"{len(secret)} characters, 32+ needed", fix)
    else:
        yield Finding(
            "OPSGATE_SESSION_SECRET",
            "ok",
            f"set; console sign-ins last {settings.ui_session_ttl:.0f}s",
        )


def check_oidc(settings: Settings, production: bool) -> Iterator[Finding]:
    """The console's OIDC sign-in: off, or complete (and in production https with a client
    secret). The secret itself is never shown."""
    if settings.oidc_issuer is None and settings.oidc_client_id is None:
        yield Finding("OPSGATE_OIDC_ISSUER", "ok", "not configured (console sign-in by API key)")
        return
    problems = settings.oidc_problems(production=production)
    if problems:
        yield Finding(
            "OPSGATE_OIDC_ISSUER",
            "fail" if production else "warn",
            "OIDC sign-in is incomplete: " + "; ".join(problems),
            "set the variables named (docs/console.md, OIDC sign-in)",
        )
        return
    secret = "a client secret" if settings.oidc_client_secret else "no client secret"
    yield Finding(
        "OPSGATE_OIDC_ISSUER",
        "ok",
        f"OIDC sign-in through {settings.oidc_issuer} as client {settings.oidc_client_id} with "
        f"{secret}; name from {settings.oidc_principal_claim}, roles from "
        f"{settings.oidc_role_claim} ({len(settings.oidc_roles())} mapped value(s))",
    )


def check_downstream(settings: Settings, production: bool) -> Iterator[Finding]:
    """Each tool's credentials and base URL."""
    bad: Status = "fail" if production else "warn"
    for system, variable in _SYSTEMS.items():
        base = str(getattr(settings, f"{system}_api_base"))
        secret = getattr(settings, variable.removeprefix("OPSGATE_").lower()).get_secret_value()
        # The settings' convention: a system at the local sandbox address is not in use.
        in_use = system in ("stripe", "zendesk") or base != _SANDBOX
        if in_use and secret in _PLACEHOLDER_SECRETS:
            yield Finding(
                variable,
                bad,
                "is empty" if not secret else "is a sandbox placeholder",
                f"set {variable} to {system}'s service-account credential",
            )
        else:
            yield Finding(variable, "ok", "set" if in_use else f"not in use ({base})")
        if production and any(host in base for host in _SANDBOX_HOSTS) and in_use:
            yield Finding(
                f"OPSGATE_{system.upper()}_API_BASE",
                "warn",
                f"points at the sandbox ({base})",
                f"point it at the real {system} API",
            )
    if settings.zendesk_email in _PLACEHOLDER_EMAILS:
        yield Finding(
            "OPSGATE_ZENDESK_EMAIL",
            bad,
            "is the sandbox placeholder",
            "set OPSGATE_ZENDESK_EMAIL to the Zendesk agent account opsgate acts as",
        )


def check_intake(settings: Settings, production: bool) -> Iterator[Finding]:
    """Webhook secrets and API keys, for the intakes that are configured."""
    bad: Status = "fail" if production else "warn"
    secrets = settings.zendesk_secrets()
    if settings.zendesk_webhook_secret is not None:
        weak = [s for s in secrets if s in _PLACEHOLDER_SECRETS or len(s) < 16]
        if not secrets or weak:
            yield Finding(
                "OPSGATE_ZENDESK_WEBHOOK_SECRET",
                bad,
                "is empty, a placeholder or shorter than 16 characters",
                "copy the webhook's signing secret from Zendesk Admin Center",
            )
        else:
            yield Finding("OPSGATE_ZENDESK_WEBHOOK_SECRET", "ok", f"{len(secrets)} secret(s)")
    if settings.salesforce_org_id is not None:
        yield Finding("OPSGATE_SALESFORCE_ORG_ID", "ok", settings.salesforce_org_id)
    keys = settings.env_api_keys()
    weak_keys = [k.name for k in keys if k.key in _PLACEHOLDER_SECRETS or len(k.key) < 16]
    if weak_keys:
        yield Finding(
            "OPSGATE_API_KEYS",
            bad,
            f"key(s) of {', '.join(weak_keys)} are placeholders or shorter than 16 characters",
            "use `opsgate keys create` or keys from `openssl rand -hex 24`",
        )
    elif keys:
        yield Finding("OPSGATE_API_KEYS", "ok", f"{len(keys)} key(s)")
    if settings.zendesk_webhook_secret is None and settings.salesforce_org_id is None:
        yield Finding(
            "intake",
            "ok",
            "no webhook intake configured (Zendesk and Salesforce webhooks refuse deliveries)",
        )


def check_key_scopes(settings: Settings, production: bool) -> Iterator[Finding]:
    """Every workflow an OPSGATE_API_KEYS scope names is one opsgate runs."""
    from app.errors import PermanentError
    from app.workflows import registry

    scoped = [k for k in settings.env_api_keys() if k.workflows is not None]
    if not scoped:
        return
    bad: Status = "fail" if production else "warn"
    try:
        known = set(registry.workflows())
    except PermanentError as exc:
        yield Finding("OPSGATE_API_KEYS scopes", bad, f"cannot check them: {exc}")
        return
    unknown = [
        f"{wf!r} (key {k.name!r})"
        for k in scoped
        for wf in sorted(k.workflows or ())
        if wf not in known
    ]
    if unknown:
        yield Finding(
            "OPSGATE_API_KEYS scopes",
            bad,
            f"not a registered workflow: {', '.join(unknown)}",
            f"scope keys to registered workflows: {', '.join(sorted(known))}",
        )
    else:
        yield Finding("OPSGATE_API_KEYS scopes", "ok", f"{len(scoped)} scoped key(s)")


def check_notifications(settings: Settings, production: bool) -> Iterator[Finding]:
    """The reviewers' webhook: https in production; only its host is ever shown (the URL
    carries the webhook's token)."""
    secret = settings.notify_webhook_url
    if secret is None:
        yield Finding(
            "OPSGATE_NOTIFY_WEBHOOK_URL",
            "warn",
            "not set: no notifications; reviewers see new escalations only in the console",
            "set OPSGATE_NOTIFY_WEBHOOK_URL to a Slack incoming webhook or a JSON receiver",
        )
        return
    parts = urlsplit(secret.get_secret_value().strip())
    fix = "set OPSGATE_NOTIFY_WEBHOOK_URL to the receiver's full https:// URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        yield Finding("OPSGATE_NOTIFY_WEBHOOK_URL", "fail", "not an http(s) URL with a host", fix)
    elif parts.scheme == "http" and production:
        yield Finding(
            "OPSGATE_NOTIFY_WEBHOOK_URL",
            "fail",
            f"http:// to {parts.hostname}: the URL's token would cross the network in clear",
            fix,
        )
    else:
        yield Finding(
            "OPSGATE_NOTIFY_WEBHOOK_URL",
            "ok",
            f"{settings.notify_format} messages to {parts.hostname} ({parts.scheme}), reminders "
            f"{settings.notify_reminder_before:.0f}s before a deadline",
        )
    if settings.console_url is None:
        yield Finding(
            "OPSGATE_CONSOLE_URL",
            "warn",
            "not set: notifications carry no link to the escalation",
            "set OPSGATE_CONSOLE_URL to the console's external base URL, e.g. "
            "https://opsgate.example.com",
        )
    else:
        yield Finding("OPSGATE_CONSOLE_URL", "ok", f"links to {settings.console_url}/ui/...")


def check_database(settings: Settings) -> Iterator[Finding]:
    """The database answers and its schema is at the migrations' head."""
    from app.core import db
    from app.errors import ServiceUnavailable

    if settings.database_url is None:
        path = settings.var_dir / "opsgate.db"
        if not path.exists():
            yield Finding(
                "database",
                "warn",
                f"embedded SQLite at {path} does not exist yet",
                "run: opsgate db upgrade (or set OPSGATE_DATABASE_URL)",
            )
            return
    try:
        db.check_schema(settings)
    except ServiceUnavailable as exc:
        yield Finding("database", "fail", str(exc), _database_fix(str(exc)))
        return
    current, _, _ = db.schema_revisions(settings)
    where = db.describe_url(settings.resolved_database_url())
    yield Finding("database", "ok", f"{where} at schema {current} (head)")


def _database_fix(message: str) -> str:
    if "opsgate db upgrade" in message or "version that migrated" in message:
        return ""  # the message already says what to do
    return "check OPSGATE_DATABASE_URL and that PostgreSQL runs and accepts connections"


def check_redis(settings: Settings) -> Iterator[Finding]:
    """Redis answers (the embedded one is started on demand, so only noted)."""
    from app.core import broker
    from app.errors import ServiceUnavailable

    if settings.redis_url is None:
        yield Finding("redis", "ok", "embedded redis-server under ./var/ (started on demand)")
        return
    try:
        broker.check_redis(settings)
    except ServiceUnavailable as exc:
        yield Finding(
            "redis", "fail", str(exc), "check OPSGATE_REDIS_URL and that redis-server runs"
        )
        return
    yield Finding("redis", "ok", f"{broker.describe_url(settings)} answers")


def _endpoints(settings: Settings) -> dict[str, tuple[str, str | None, str]]:
    """Model endpoints to probe: base URL -> (what names it, its key, the key's variable)."""
    endpoints: dict[str, tuple[str, str | None, str]] = {}
    if settings.model_configured:
        base = settings.openai_base_url or "https://api.openai.com/v1"
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        endpoints[base] = ("OPENAI_BASE_URL", key, "OPENAI_API_KEY")
    try:
        from app.llm.config import models_config

        tiers = models_config().tiers
    except Exception:  # noqa: BLE001 - a broken models.yaml is reported by its own loader
        tiers = {}
    for name, tier in tiers.items():
        base_url = getattr(tier, "base_url", None)
        key_env = getattr(tier, "api_key_env", None)
        if base_url:
            # models.yaml names the variable that holds this endpoint's key.
            key = os.environ.get(key_env) if key_env else None
            endpoints.setdefault(base_url, (f"tier {name}", key, key_env or "(no key)"))
    return endpoints


def check_models(settings: Settings) -> Iterator[Finding]:
    """Each configured model endpoint answers GET {base}/models with its key."""
    import httpx

    from app.core.db import describe_url

    endpoints = _endpoints(settings)
    if not endpoints:
        yield Finding("models", "ok", "no model endpoint configured (rules tier only)")
        return
    for base, (origin, key, key_var) in endpoints.items():
        shown = describe_url(base) if "@" in base else base
        what = f"models ({origin})"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            resp = httpx.get(f"{base.rstrip('/')}/models", headers=headers, timeout=_MODEL_TIMEOUT)
        except httpx.HTTPError as exc:
            yield Finding(
                what,
                "fail",
                f"{shown} does not answer ({type(exc).__name__})",
                "check the URL and that the server runs",
            )
            continue
        if resp.status_code in (401, 403):
            yield Finding(
                what, "fail", f"{shown} refuses the key ({resp.status_code})", f"check {key_var}"
            )
        elif resp.status_code >= 400:
            yield Finding(
                what,
                "fail",
                f"{shown}/models answered {resp.status_code}",
                "check the URL: it is the API's base, ending in /v1 for most servers",
            )
        else:
            yield Finding(what, "ok", f"{shown} answers")


def check_flower(production: bool) -> Iterator[Finding]:
    """Flower's basic auth (read where Flower runs: its variable is Flower's own)."""
    # Not an opsgate setting: Flower reads it, so doctor reads it from the environment too.
    raw = os.environ.get("FLOWER_BASIC_AUTH")
    if raw is None:
        if production:
            yield Finding(
                "FLOWER_BASIC_AUTH",
                "warn",
                "not set in this container (Flower reads it)",
                "run doctor in the flower service: docker compose run --rm flower opsgate doctor",
            )
        return
    weak = []
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        user, sep, password = pair.partition(":")
        if not sep or not user:
            weak.append("an entry is not user:password")
        elif len(password) < 12 or password in _PLACEHOLDER_SECRETS or password == user:
            weak.append(f"the password of {user!r} is trivial")
    if weak:
        yield Finding(
            "FLOWER_BASIC_AUTH",
            "fail" if production else "warn",
            "; ".join(weak),
            "set FLOWER_BASIC_AUTH=user:$(openssl rand -hex 16)",
        )
    else:
        yield Finding("FLOWER_BASIC_AUTH", "ok", "set")


def run_checks() -> list[Finding]:
    """Every check, in the order they are printed."""
    settings, production, findings = _load_settings()
    if settings is None:
        return findings
    for check in (
        check_mode,
        check_signing_keys,
        check_session_secret,
        check_oidc,
        check_downstream,
        check_intake,
        check_key_scopes,
        check_notifications,
    ):
        findings.extend(check(settings, production))
    findings.extend(check_database(settings))
    findings.extend(check_redis(settings))
    findings.extend(check_models(settings))
    findings.extend(check_flower(production))
    return findings


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Check this deployment: mode, secrets, database, Redis, model endpoints, Flower.

    Prints one line per check, each problem with its fix; exits 1 if any check failed.
    """
    from app.cli.common import emit_json

    findings = run_checks()
    failed = any(f.status == "fail" for f in findings)
    if as_json:
        emit_json({"ok": not failed, "checks": [asdict(f) for f in findings]})
    else:
        for finding in findings:
            click.echo(finding.line())
    sys.exit(1 if failed else 0)
