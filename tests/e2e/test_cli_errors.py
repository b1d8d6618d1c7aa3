"""Every command that reads the database or Redis, run as a user runs it, against a database
that is empty, one that does not answer, and a Redis that does not answer: one line that
says what to do, a non-zero exit, never a traceback. The services refuse to start the same
way, and a bad setting is one line before anything runs."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.core.db import schema_revisions
from tests.support.env import OPSGATE_VARS, PG_ADMIN_URL, ROOT

pytestmark = pytest.mark.e2e

SUBMISSION = {"workflow": "support_refund", "external_id": "4821", "input": {"ticket_id": 4821}}

# Every command that reads the database (and those that also need Redis).
DB_COMMANDS = [
    ["jobs", "list"],
    ["jobs", "show", "abc"],
    ["escalations", "list"],
    ["approve", "1"],
    ["reject", "1", "--reason", "other"],
    ["audit", "show", "abc"],
    ["audit", "verify"],
    ["report"],
    ["keys", "list"],
    ["killswitch", "status"],
    ["killswitch", "on", "--reason", "drill"],
    ["submit", "{submission}"],
    ["data", "purge"],
    ["data", "erase", "someone@example.com", "--yes"],
]
REDIS_COMMANDS = [
    ["approve", "1"],
    ["reject", "1", "--reason", "other"],
    ["killswitch", "status"],
    ["killswitch", "on", "--reason", "drill"],
    ["submit", "{submission}"],
]
SERVICES = [["api", "--port", "1"], ["worker"], ["beat"]]
UNREACHABLE_DB = "postgresql://postgres:s3cret-pw@127.0.0.1:1/opsgate"
UNREACHABLE_REDIS = "redis://:r3dis-pw@127.0.0.1:1/0"


def opsgate(
    home: Path, args: list[str], timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does, with only `env` of opsgate's variables set."""
    submission = home / "submission.json"
    submission.write_text(json.dumps(SUBMISSION))
    argv = [str(submission) if a == "{submission}" else a for a in args]
    base = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        cwd=home,
        env={**base, "OPSGATE_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed (stderr), checked to be alone."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert not proc.stdout.strip(), proc.stdout
    return lines[0]


@pytest.fixture(scope="module")
def empty_database() -> Iterator[str]:
    """A PostgreSQL database with nothing in it (never migrated)."""
    name = f"opsgate_empty_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("cmd", DB_COMMANDS + SERVICES, ids=" ".join)
def test_an_unmigrated_database_names_db_upgrade(
    tmp_path: Path, empty_database: str, redis_db_url: str, cmd: list[str]
) -> None:
    started = time.monotonic()
    proc = opsgate(
        tmp_path, cmd, OPSGATE_DATABASE_URL=empty_database, OPSGATE_REDIS_URL=redis_db_url
    )

    line = one_line(proc)
    assert line.startswith("error: database at postgresql+psycopg://postgres@127.0.0.1")
    assert "has no opsgate schema" in line and line.endswith("run: opsgate db upgrade")
    assert proc.returncode == 3 and time.monotonic() - started < 30


def test_a_schema_behind_head_names_both_revisions(
    tmp_path: Path, empty_database: str, redis_db_url: str
) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    url = empty_database.replace("postgresql://", "postgresql+psycopg://")
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0008")
    try:
        proc = opsgate(
            tmp_path,
            ["jobs", "list"],
            OPSGATE_DATABASE_URL=empty_database,
            OPSGATE_REDIS_URL=redis_db_url,
        )
    finally:
        command.downgrade(cfg, "base")

    line = one_line(proc)
    head = schema_revisions()[1]
    assert f"schema is at 0008, head is {head} — run: opsgate db upgrade" in line


@pytest.mark.parametrize("cmd", DB_COMMANDS + SERVICES, ids=" ".join)
def test_an_unreachable_database_is_named_with_its_password_masked(
    tmp_path: Path, redis_db_url: str, cmd: list[str]
) -> None:
    proc = opsgate(
        tmp_path, cmd, OPSGATE_DATABASE_URL=UNREACHABLE_DB, OPSGATE_REDIS_URL=redis_db_url
    )

    line = one_line(proc)
    assert line.startswith(
        "error: database unreachable at postgresql+psycopg://postgres:***@127.0.0.1:1/opsgate: "
    )
    assert "s3cret-pw" not in proc.stderr and proc.returncode == 3


@pytest.mark.parametrize("cmd", REDIS_COMMANDS + SERVICES, ids=" ".join)
def test_an_unreachable_redis_is_named_with_its_password_masked(
    tmp_path: Path, pg_env: dict[str, str], cmd: list[str]
) -> None:
    proc = opsgate(
        tmp_path,
        cmd,
        OPSGATE_DATABASE_URL=pg_env["OPSGATE_DATABASE_URL"],
        OPSGATE_REDIS_URL=UNREACHABLE_REDIS,
    )

    line = one_line(proc)
    assert line.startswith("error: redis unreachable at redis://***@127.0.0.1:1/0")
    assert "r3dis-pw" not in proc.stderr and proc.returncode == 3


@pytest.mark.parametrize("cmd", [["jobs", "list"], ["api"], ["worker"], ["beat"], ["demo"]])
def test_a_bad_setting_is_one_line_before_anything_runs(tmp_path: Path, cmd: list[str]) -> None:
    proc = opsgate(tmp_path, cmd, OPSGATE_SALESFORCE_ORG_ID="00D000000000062EAB")

    line = one_line(proc)
    assert line.startswith("opsgate: invalid setting OPSGATE_SALESFORCE_ORG_ID: ")
    assert "(fix: " in line and proc.returncode == 2
    assert not (tmp_path / "var").exists()  # nothing was started or created


def test_help_works_whatever_the_settings(tmp_path: Path) -> None:
    proc = opsgate(tmp_path, ["jobs", "list", "--help"], OPSGATE_API_URL="not a url")

    assert proc.returncode == 0 and "Usage:" in proc.stdout


def test_commands_through_the_api_need_no_database(tmp_path: Path) -> None:
    # The API is unreachable too: the command names it, not the database it never opened.
    proc = opsgate(
        tmp_path,
        ["killswitch", "on", "--reason", "drill"],
        OPSGATE_API_URL="http://127.0.0.1:1",
        OPSGATE_API_KEY="k-0123456789abcdef",
        OPSGATE_DATABASE_URL=UNREACHABLE_DB,
    )

    line = one_line(proc)
    assert line.startswith("error: opsgate API unreachable at http://127.0.0.1:1")


def test_demo_refuses_production(tmp_path: Path) -> None:
    proc = opsgate(
        tmp_path,
        ["demo"],
        OPSGATE_ENV="production",
        OPSGATE_DATABASE_URL=UNREACHABLE_DB,
        OPSGATE_REDIS_URL=UNREACHABLE_REDIS,
        OPSGATE_STRIPE_API_KEY="rk_live_realkey123",
        OPSGATE_ZENDESK_API_TOKEN="zd-real-token-456",
        OPSGATE_APPROVAL_KEYS="k1:0123456789abcdef0123456789abcdef",
        OPSGATE_SESSION_SECRET="0123456789abcdef0123456789abcdef-session",
    )

    line = one_line(proc)
    assert line.startswith("error: opsgate demo is for a development machine")
    assert proc.returncode == 2


def test_demo_takes_host_and_port_only_with_ui(tmp_path: Path) -> None:
    proc = opsgate(tmp_path, ["demo", "--port", "8123"])

    assert one_line(proc) == "error: --host and --port go with --ui"


def test_demo_refuses_production_even_with_placeholder_secrets(tmp_path: Path) -> None:
    proc = opsgate(tmp_path, ["demo"], OPSGATE_ENV="production")

    line = one_line(proc)
    assert line.startswith("opsgate: invalid settings: production settings need real values")


def test_demo_migrates_the_empty_postgresql_it_is_pointed_at(
    tmp_path: Path, redis_db_url: str
) -> None:
    name = f"opsgate_demo_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        proc = opsgate(
            tmp_path,
            ["demo", "--json"],
            timeout=600,
            OPSGATE_DATABASE_URL=url,
            OPSGATE_REDIS_URL=redis_db_url,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout)
        assert not result["timed_out"] and result["rows"]
        assert all(row["status"] != "queued" for row in result["rows"])
        with psycopg.connect(url) as conn:
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert revision == (schema_revisions()[1],)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
