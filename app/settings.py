"""One Settings object read from the environment; everything configurable lives here."""

from __future__ import annotations

import functools
import getpass
import re
import socket
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.salesforce_ids import canonical_id, to_18

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Placeholder values that must never reach a production deployment.
_PLACEHOLDER_SECRETS = {
    "",
    "changeme",
    "sk_test_sandbox",
    "sandbox-token",
    "dev-signing-key",
    "dev-session-secret",
}


# Roles an API key can have: submit work, review the human queue, or both.
ROLES = ("requester", "reviewer", "admin")


_SANDBOX = "http://127.0.0.1:8765"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Runtime configuration; names follow the environment contract in DESIGN.md."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    environment: Literal["development", "production"] = Field(
        "development", validation_alias=_env("OPSGATE_ENV")
    )
    home: Path = Field(Path("."), validation_alias=_env("OPSGATE_HOME"))
    config_dir: Path = Field(PROJECT_ROOT / "config", validation_alias=_env("OPSGATE_CONFIG_DIR"))
    # Modules of workflows beyond the built-in ones (comma-separated import paths, each with a
    # WORKFLOW; docs/workflows/adding.md). Every process of a fleet must name the same ones.
    workflow_modules: str = Field("", validation_alias=_env("OPSGATE_WORKFLOW_MODULES"))
    database_url: str | None = Field(None, validation_alias=_env("OPSGATE_DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=_env("OPSGATE_REDIS_URL"))

    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))

    zendesk_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("OPSGATE_ZENDESK_WEBHOOK_SECRET")
    )
    salesforce_org_id: str | None = Field(None, validation_alias=_env("OPSGATE_SALESFORCE_ORG_ID"))
    api_keys: SecretStr | None = Field(None, validation_alias=_env("OPSGATE_API_KEYS"))
    api_url: str | None = Field(None, validation_alias=_env("OPSGATE_API_URL"))
    # Where operators open Flower; the console's header links to it when set.
    flower_url: str | None = Field(None, validation_alias=_env("OPSGATE_FLOWER_URL"))
    # Approval token signing keys, `kid:secret` pairs; the first signs, all verify (rotation).
    approval_keys: SecretStr = Field(
        SecretStr("dev:dev-signing-key"), validation_alias=_env("OPSGATE_APPROVAL_KEYS")
    )
    approval_ttl: float = Field(86400.0, gt=0, validation_alias=_env("OPSGATE_APPROVAL_TTL"))
    api_key: SecretStr | None = Field(None, validation_alias=_env("OPSGATE_API_KEY"))
    # The reviewer console (/ui): the secret that signs its session cookies and derives its
    # CSRF tokens, and how long a sign-in lasts before the reviewer signs in again.
    session_secret: SecretStr = Field(
        SecretStr("dev-session-secret"), validation_alias=_env("OPSGATE_SESSION_SECRET")
    )
    ui_session_ttl: float = Field(
        7200.0, gt=0, le=86400, validation_alias=_env("OPSGATE_UI_SESSION_TTL")
    )
    # Console sign-in through an OpenID Connect provider (Okta, Entra ID): on when the issuer
    # and the client id are set (docs/console.md, "OIDC sign-in").
    oidc_issuer: str | None = Field(None, validation_alias=_env("OPSGATE_OIDC_ISSUER"))
    oidc_client_id: str | None = Field(None, validation_alias=_env("OPSGATE_OIDC_CLIENT_ID"))
    oidc_client_secret: SecretStr | None = Field(
        None, validation_alias=_env("OPSGATE_OIDC_CLIENT_SECRET")
    )
    # The ID-token claim whose value is the person's name in opsgate (decisions: sso:<name>).
    oidc_principal_claim: str = Field(
        "email", validation_alias=_env("OPSGATE_OIDC_PRINCIPAL_CLAIM")
    )
    # The claim listing the person's groups, and which of its values give which role.
    oidc_role_claim: str = Field("groups", validation_alias=_env("OPSGATE_OIDC_ROLE_CLAIM"))
    oidc_role_map: str = Field("", validation_alias=_env("OPSGATE_OIDC_ROLE_MAP"))
    # A claim listing the workflows the person is scoped to (unset: every workflow).
    oidc_scope_claim: str | None = Field(None, validation_alias=_env("OPSGATE_OIDC_SCOPE_CLAIM"))
    oidc_scopes: str = Field("openid email profile", validation_alias=_env("OPSGATE_OIDC_SCOPES"))
    # Where the provider sends the browser back; unset: derived from the request (set it
    # behind a proxy that terminates TLS: https://opsgate.example.com/ui/sign-in/oidc/callback).
    oidc_redirect_uri: str | None = Field(None, validation_alias=_env("OPSGATE_OIDC_REDIRECT_URI"))

    # Downstream systems; the defaults point at a locally running `opsgate sandbox`.
    stripe_api_base: str = Field(
        "http://127.0.0.1:8765", validation_alias=_env("OPSGATE_STRIPE_API_BASE")
    )
    zendesk_api_base: str = Field(
        "http://127.0.0.1:8765", validation_alias=_env("OPSGATE_ZENDESK_API_BASE")
    )
    salesforce_api_base: str = Field(
        "http://127.0.0.1:8765", validation_alias=_env("OPSGATE_SALESFORCE_API_BASE")
    )
    okta_api_base: str = Field(
        "http://127.0.0.1:8765", validation_alias=_env("OPSGATE_OKTA_API_BASE")
    )
    # Each tool speaks under its own service identity (no shared high-privilege key).
    stripe_api_key: SecretStr = Field(
        SecretStr("sk_test_sandbox"), validation_alias=_env("OPSGATE_STRIPE_API_KEY")
    )
    zendesk_email: str = Field(
        "agent@opsgate.example", validation_alias=_env("OPSGATE_ZENDESK_EMAIL")
    )
    zendesk_api_token: SecretStr = Field(
        SecretStr("sandbox-token"), validation_alias=_env("OPSGATE_ZENDESK_API_TOKEN")
    )
    salesforce_api_version: str = Field(
        "v60.0", pattern=r"^v\d+\.\d$", validation_alias=_env("OPSGATE_SALESFORCE_API_VERSION")
    )
    salesforce_access_token: SecretStr = Field(
        SecretStr("sandbox-token"), validation_alias=_env("OPSGATE_SALESFORCE_ACCESS_TOKEN")
    )
    okta_api_token: SecretStr = Field(
        SecretStr("sandbox-token"), validation_alias=_env("OPSGATE_OKTA_API_TOKEN")
    )
    # Connections per process; keep it at or above a worker's thread count.
    db_pool_size: int = Field(20, ge=1, validation_alias=_env("OPSGATE_DB_POOL_SIZE"))
    http_timeout_seconds: float = Field(10.0, validation_alias=_env("OPSGATE_HTTP_TIMEOUT"))

    # Intake.
    max_body_bytes: int = Field(1_048_576, validation_alias=_env("OPSGATE_MAX_BODY_BYTES"))
    zendesk_tags: str = Field("refund", validation_alias=_env("OPSGATE_ZENDESK_TAGS"))
    salesforce_allowed_ips: str = Field("", validation_alias=_env("OPSGATE_SALESFORCE_ALLOWED_IPS"))

    sentry_dsn: SecretStr | None = Field(None, validation_alias=_env("SENTRY_DSN"))
    otel_endpoint: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    # Sentry's own variable names; the environment defaults to OPSGATE_ENV.
    sentry_environment: str | None = Field(None, validation_alias=_env("SENTRY_ENVIRONMENT"))
    sentry_release: str | None = Field(None, validation_alias=_env("SENTRY_RELEASE"))
    # Share of requests and tasks Sentry traces (errors are always sent).
    sentry_traces_sample_rate: float = Field(
        0.1, ge=0, le=1, validation_alias=_env("OPSGATE_SENTRY_TRACES_SAMPLE_RATE")
    )

    agent_identity: str = Field(
        "opsgate-agent/local", validation_alias=_env("OPSGATE_AGENT_IDENTITY")
    )
    log_level: str = Field("INFO", validation_alias=_env("OPSGATE_LOG_LEVEL"))
    log_format: Literal["json", "console"] = Field(
        "json", validation_alias=_env("OPSGATE_LOG_FORMAT")
    )

    # Fleet reliability knobs.
    visibility_timeout: int = Field(3600, validation_alias=_env("OPSGATE_VISIBILITY_TIMEOUT"))
    max_deliveries: int = Field(10, validation_alias=_env("OPSGATE_MAX_DELIVERIES"))
    reaper_interval: float = Field(10.0, validation_alias=_env("OPSGATE_REAPER_INTERVAL"))
    # The audit trail: how often beat anchors the job chains' heads in a checkpoint, and how
    # long personal data stays in the operational stores after a job settles.
    audit_checkpoint_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("OPSGATE_AUDIT_CHECKPOINT_SECONDS")
    )
    retention_days: int = Field(90, ge=1, validation_alias=_env("OPSGATE_RETENTION_DAYS"))
    stale_after: float = Field(120.0, validation_alias=_env("OPSGATE_STALE_AFTER"))
    # How long a stage message may wait to be taken before the relay sends it again (it is sent
    # right after its commit; a message still waiting in a backlog past this is sent twice).
    outbox_grace: float = Field(30.0, validation_alias=_env("OPSGATE_OUTBOX_GRACE"))
    retry_max: int = Field(4, validation_alias=_env("OPSGATE_RETRY_MAX"))
    # Circuit breaker per downstream system (shared through Redis).
    breaker_window: float = Field(30.0, validation_alias=_env("OPSGATE_BREAKER_WINDOW"))
    breaker_min_calls: int = Field(10, validation_alias=_env("OPSGATE_BREAKER_MIN_CALLS"))
    breaker_failure_rate: float = Field(
        0.5, gt=0, le=1, validation_alias=_env("OPSGATE_BREAKER_FAILURE_RATE")
    )
    breaker_open_seconds: float = Field(30.0, validation_alias=_env("OPSGATE_BREAKER_OPEN_SECONDS"))
    breaker_probes: int = Field(2, ge=1, validation_alias=_env("OPSGATE_BREAKER_PROBES"))
    # A job parked behind an open breaker longer than this escalates as circuit_open.
    breaker_max_wait: float = Field(900.0, validation_alias=_env("OPSGATE_BREAKER_MAX_WAIT"))
    # Transient-error retries a job may spend in total, over all its stages.
    retry_budget: int = Field(12, validation_alias=_env("OPSGATE_RETRY_BUDGET"))
    # How long a claimed step is protected from other deliveries; must outlast one tool call.
    claim_lease: float = Field(60.0, validation_alias=_env("OPSGATE_CLAIM_LEASE"))
    # Human queue: how long a reviewer's claim holds, and how long an approval can wait.
    review_claim: float = Field(1800.0, gt=0, validation_alias=_env("OPSGATE_REVIEW_CLAIM"))
    decision_deadline: float = Field(
        259200.0, gt=0, validation_alias=_env("OPSGATE_DECISION_DEADLINE")
    )
    # Reviewer notifications (docs/notifications.md): the webhook is a secret (a Slack
    # incoming-webhook URL carries its token); unset, no notification is created.
    notify_webhook_url: SecretStr | None = Field(
        None, validation_alias=_env("OPSGATE_NOTIFY_WEBHOOK_URL")
    )
    notify_format: Literal["slack", "json"] = Field(
        "slack", validation_alias=_env("OPSGATE_NOTIFY_FORMAT")
    )
    notify_reminder_before: float = Field(
        14400.0, gt=0, validation_alias=_env("OPSGATE_NOTIFY_REMINDER_BEFORE")
    )
    # Delivery retries: the first waits this long, each next one twice as long (capped).
    notify_backoff: float = Field(10.0, gt=0, validation_alias=_env("OPSGATE_NOTIFY_BACKOFF"))
    notify_max_attempts: int = Field(8, ge=1, validation_alias=_env("OPSGATE_NOTIFY_MAX_ATTEMPTS"))
    # The console's external base URL, for the link to an escalation in a notification.
    console_url: str | None = Field(None, validation_alias=_env("OPSGATE_CONSOLE_URL"))

    @field_validator(
        "database_url",
        "redis_url",
        "openai_base_url",
        "api_url",
        "flower_url",
        "otel_endpoint",
        "salesforce_org_id",
        "sentry_dsn",
        "sentry_environment",
        "sentry_release",
        "oidc_issuer",
        "oidc_client_id",
        "oidc_client_secret",
        "oidc_scope_claim",
        "oidc_redirect_uri",
        "notify_webhook_url",
        "console_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose files pass `VAR=` for optional settings; an empty value means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "stripe_api_base",
        "zendesk_api_base",
        "salesforce_api_base",
        "okta_api_base",
        "api_url",
        "flower_url",
        "openai_base_url",
        "oidc_issuer",
        "oidc_redirect_uri",
        "console_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
        return value

    @field_validator("salesforce_org_id")
    @classmethod
    def _salesforce_org_id(cls, value: str | None) -> str | None:
        if value is not None:
            check_salesforce_org_id(value.strip())
            return value.strip()
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_key_triples(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())
        return value

    @field_validator("oidc_role_map")
    @classmethod
    def _oidc_role_pairs(cls, value: str) -> str:
        parse_role_map(value)
        return value

    @field_validator("oidc_principal_claim", "oidc_role_claim")
    @classmethod
    def _claim_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty (fix: name an ID-token claim, e.g. email or groups)")
        return value.strip()

    @field_validator("oidc_scopes")
    @classmethod
    def _openid_scope(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError(
                f"{value!r} lacks openid (fix: e.g. OPSGATE_OIDC_SCOPES='openid email profile')"
            )
        return value

    @field_validator("approval_keys")
    @classmethod
    def _approval_key_pairs(cls, value: SecretStr) -> SecretStr:
        kids = [kid for kid, _ in parse_signing_keys(value.get_secret_value())]
        if len(set(kids)) != len(kids):
            duplicate = next(k for k in kids if kids.count(k) > 1)
            raise ValueError(
                f"key id {duplicate!r} appears twice (fix: give every kid:secret pair its own kid)"
            )
        return value

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        problems = []
        checked = {
            "stripe_api_key": self.stripe_api_base,
            "zendesk_api_token": self.zendesk_api_base,
            "salesforce_access_token": self.salesforce_api_base,
            "okta_api_token": self.okta_api_base,
        }
        for name, base in checked.items():
            # A system still pointed at the local sandbox address is not in use.
            in_use = name in ("stripe_api_key", "zendesk_api_token") or base != _SANDBOX
            if in_use and getattr(self, name).get_secret_value() in _PLACEHOLDER_SECRETS:
                problems.append(f"{name} (OPSGATE_{name.upper()})")
        if any(
            secret in _PLACEHOLDER_SECRETS or len(secret) < 16 for _, secret in self.signing_keys()
        ):
            problems.append(
                "approval_keys (OPSGATE_APPROVAL_KEYS: kid:secret pairs, secrets of 16+ characters)"
            )
        session = self.session_secret.get_secret_value()
        if session in _PLACEHOLDER_SECRETS or len(session) < 32:
            problems.append(
                "session_secret (OPSGATE_SESSION_SECRET: 32+ random characters, "
                "e.g. openssl rand -hex 32)"
            )
        problems.extend(self.oidc_problems(production=True))
        if self.database_url is None:
            problems.append("database_url (OPSGATE_DATABASE_URL: SQLite is for one machine only)")
        if self.redis_url is None:
            problems.append(
                "redis_url (OPSGATE_REDIS_URL: the embedded redis-server is for one machine only)"
            )
        if problems:
            raise ValueError("production settings need real values for: " + ", ".join(problems))
        return self

    def signing_keys(self) -> list[tuple[str, str]]:
        """The approval signing keys as (key id, secret), the signing one first."""
        return parse_signing_keys(self.approval_keys.get_secret_value())

    @property
    def oidc_configured(self) -> bool:
        """Whether console sign-in through the OIDC provider is on."""
        return self.oidc_issuer is not None and self.oidc_client_id is not None

    def oidc_roles(self) -> dict[str, str]:
        """OPSGATE_OIDC_ROLE_MAP as {claim value: role}."""
        return parse_role_map(self.oidc_role_map)

    def oidc_problems(self, *, production: bool) -> list[str]:
        """What keeps the OIDC settings from working (or, in production, from being safe);
        empty when OIDC is not configured at all."""
        if self.oidc_issuer is None and self.oidc_client_id is None:
            return []
        problems = []
        if self.oidc_issuer is None:
            problems.append("oidc_issuer (OPSGATE_OIDC_ISSUER: the provider's issuer URL)")
        elif production and urlsplit(self.oidc_issuer).scheme != "https":
            problems.append("oidc_issuer (OPSGATE_OIDC_ISSUER: an https URL in production)")
        if self.oidc_client_id is None:
            problems.append("oidc_client_id (OPSGATE_OIDC_CLIENT_ID: the app's client id)")
        secret = self.oidc_client_secret
        if production and (secret is None or secret.get_secret_value() in _PLACEHOLDER_SECRETS):
            problems.append(
                "oidc_client_secret (OPSGATE_OIDC_CLIENT_SECRET: the app's client secret)"
            )
        if not self.oidc_roles():
            problems.append(
                "oidc_role_map (OPSGATE_OIDC_ROLE_MAP: e.g. opsgate-reviewers=reviewer)"
            )
        return problems

    @property
    def var_dir(self) -> Path:
        """Where the embedded defaults keep their files (SQLite, redis socket, pidfiles)."""
        return (self.home / "var").resolve()

    @property
    def model_configured(self) -> bool:
        """Whether any model endpoint is configured (otherwise only the rules tier runs)."""
        return self.openai_api_key is not None or self.openai_base_url is not None

    def zendesk_secrets(self) -> list[str]:
        """The webhook signing secrets in force (two during a rotation)."""
        raw = self.zendesk_webhook_secret.get_secret_value() if self.zendesk_webhook_secret else ""
        return [s.strip() for s in raw.split(",") if s.strip()]

    def zendesk_tag_set(self) -> frozenset[str]:
        """Ticket tags that make a Zendesk event start a refund job (empty: every ticket)."""
        return frozenset(t.strip().lower() for t in self.zendesk_tags.split(",") if t.strip())

    def env_api_keys(self) -> list[ApiKeyEntry]:
        """`name:role[/wf1+wf2]:key` entries from OPSGATE_API_KEYS."""
        return parse_api_keys(self.api_keys.get_secret_value() if self.api_keys else "")

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL, with the embedded SQLite default and the psycopg 3 driver."""
        url = self.database_url
        if not url:
            return f"sqlite:///{self.var_dir / 'opsgate.db'}"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url


# The validators' messages end with "(fix: ...)": the CLI prints them as they are, on one
# line after the variable's name, and never echoes a secret.


def check_http_url(value: str) -> None:
    """Raise ValueError unless `value` is an http(s) URL with a host."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{value!r} is not an http(s) URL with a host "
            "(fix: give the full URL, e.g. https://api.example.com)"
        )


def check_salesforce_org_id(value: str) -> None:
    """Raise ValueError unless `value` is an org id: 00D + 12 characters, or that plus its
    3-character case checksum (Salesforce's 18-character form)."""
    where = "(fix: copy the Organization ID from Salesforce Setup > Company Information)"
    if (
        not value[:3].upper() == "00D"
        or not (value.isascii() and value.isalnum())
        or len(value) not in (15, 18)
    ):
        raise ValueError(
            f"{value!r} is not a Salesforce organization id: it starts with 00D and has 15 "
            f"letters and digits, or 18 with its checksum suffix {where}"
        )
    if len(value) == 15 and not value.startswith("00D"):
        raise ValueError(
            f"{value!r} is not a Salesforce organization id: the 15-character form is "
            f"case-sensitive and starts with 00D {where}"
        )
    if canonical_id(value) is None:
        raise ValueError(
            f"{value!r} ends in {value[15:]!r}, which is not the checksum of its first 15 "
            f"characters (that is {to_18(value[:15])[15:]!r}) {where}"
        )


def parse_signing_keys(raw: str) -> list[tuple[str, str]]:
    """`kid:secret,...` as (key id, secret) pairs, the signing one first."""
    pairs = []
    for item in raw.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid or not secret:
            raise ValueError(
                "must be kid:secret pairs, comma-separated "
                "(fix: e.g. OPSGATE_APPROVAL_KEYS=k1:<openssl rand -hex 32>)"
            )
        pairs.append((kid, secret))
    return pairs


def parse_role_map(raw: str) -> dict[str, str]:
    """`value=role,...` (OPSGATE_OIDC_ROLE_MAP) as {claim value: role}."""
    roles: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        value, sep, role = (p.strip() for p in item.rpartition("="))
        if not sep or not value or role not in ROLES:
            raise ValueError(
                f"entry {item!r} is not claim-value=role with a role of {', '.join(ROLES)} "
                "(fix: e.g. OPSGATE_OIDC_ROLE_MAP=opsgate-reviewers=reviewer,opsgate-admins=admin)"
            )
        roles[value] = role
    return roles


class ApiKeyEntry(NamedTuple):
    """One OPSGATE_API_KEYS entry; `workflows` None means every workflow."""

    name: str
    role: str
    key: str
    workflows: frozenset[str] | None


# A workflow name in a key's scope (the registry's names are lowercase identifiers).
_WORKFLOW_NAME = re.compile(r"[a-z0-9_]+")


def parse_api_keys(raw: str) -> list[ApiKeyEntry]:
    """`name:role[/wf1+wf2]:key,...` as entries; the message never shows a key."""
    entries = []
    for i, item in enumerate(filter(None, (part.strip() for part in raw.split(","))), 1):
        name, _, rest = item.partition(":")
        role_part, _, key = rest.partition(":")
        if not (name and role_part and key.strip()):
            raise ValueError(
                f"entry {i} is not name:role:key with a non-empty key "
                f"(fix: e.g. crm:requester:<openssl rand -hex 24>)"
            )
        role, scoped, scope = role_part.partition("/")
        if role not in ROLES:
            raise ValueError(
                f"role {role!r} of {name!r} is not one of {', '.join(ROLES)} "
                f"(fix: use one of {', '.join(ROLES)})"
            )
        workflows: frozenset[str] | None = None
        if scoped:
            names = scope.split("+")
            bad = [w for w in names if not _WORKFLOW_NAME.fullmatch(w)]
            if bad:
                raise ValueError(
                    f"workflow {bad[0]!r} in the scope of {name!r} is not a name of "
                    f"a-z, 0-9 and _ (fix: e.g. {name}:{role}/invoice_exception+it_request:KEY)"
                )
            workflows = frozenset(names)
        entries.append(ApiKeyEntry(name, role, key, workflows))
    return entries


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (read once; tests call `get_settings.cache_clear()`)."""
    return Settings()


def cli_actor() -> str:
    """The actor recorded for commands run directly on the database: cli:<user>@<host>."""
    try:
        user = getpass.getuser()
    except OSError:
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"
