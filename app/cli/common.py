"""Helpers the commands share: start-up checks and output."""

from __future__ import annotations

import json
from typing import Any

import click

from app.core import broker, db
from app.settings import get_settings
from app.telemetry import logs


def setup_logging(default_level: str = "WARNING") -> None:
    """Configure logs for a command (JSON, level from OPSGATE_LOG_LEVEL when set)."""
    import os

    settings = get_settings()
    level = settings.log_level if "OPSGATE_LOG_LEVEL" in os.environ else default_level
    logs.configure(level, settings.log_format)


def prepare_database() -> None:
    """Embedded SQLite is migrated on first use; a configured database must answer and be at
    the migrations' head (otherwise one line naming the URL or `opsgate db upgrade`)."""
    if get_settings().database_url is None:
        db.upgrade()
    else:
        db.check_schema()


def prepare_services(*, redis: bool = True) -> bool:
    """Check (or start) what a command needs; returns True if it started embedded Redis."""
    prepare_database()
    return broker.ensure_redis() if redis else False


def emit_json(value: Any) -> None:
    """Print a JSON document for --json."""
    click.echo(json.dumps(value, indent=2, default=str))


def through_api(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """POST to the opsgate API when OPSGATE_API_URL and OPSGATE_API_KEY are set (the key is
    the actor); None when they are not, and the command acts directly."""
    import httpx

    from app.errors import InputError, ServiceUnavailable

    settings = get_settings()
    if not (settings.api_url and settings.api_key):
        return None
    try:
        resp = httpx.post(
            f"{settings.api_url.rstrip('/')}{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
        )
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"opsgate API unreachable at {settings.api_url}: {exc}") from exc
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise InputError(f"the API refused ({resp.status_code}): {detail}")
    result: dict[str, Any] = resp.json()
    return result
