"""The command line as users meet it: help, bad input, unreachable services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import OPSGATE_VARS
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

COMMANDS = [
    [],
    ["demo"],
    ["api"],
    ["worker"],
    ["beat"],
    ["sandbox"],
    ["submit"],
    ["jobs"],
    ["jobs", "list"],
    ["jobs", "show"],
    ["escalations"],
    ["escalations", "list"],
    ["db"],
    ["db", "upgrade"],
]


def opsgate(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "opsgate")
def test_every_command_has_help(tmp_path: Path, cmd: list[str]):
    proc = opsgate(tmp_path, *cmd, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        (
            '{"workflow": "support_refund", "external_id": "1", "input": {"ticket_id": "x"}}',
            "invalid input for support_refund: ticket_id",
        ),
        ('{"workflow": "payroll", "external_id": "1", "input": {}}', "unknown workflow 'payroll'"),
        ('{"hello": 1}', "not a job submission"),
        ("[]", "holds no submissions"),
    ],
)
def test_bad_submissions_are_one_clear_line_and_enqueue_nothing(tmp_path: Path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = opsgate(tmp_path, "submit", str(bad))
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    # Nothing was stored: validation runs before the database is even opened
    assert not (tmp_path / "var" / "opsgate.db").exists()


def test_missing_file_is_a_clear_error(tmp_path: Path):
    proc = opsgate(tmp_path, "submit", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr


def test_unreachable_redis_is_named(tmp_path: Path):
    good = tmp_path / "ok.json"
    good.write_text(
        json.dumps(
            {"workflow": "support_refund", "external_id": "4821", "input": {"ticket_id": 4821}}
        )
    )
    port = free_port()
    proc = opsgate(tmp_path, "submit", str(good), OPSGATE_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert proc.returncode == 3
    assert f"redis unreachable at redis://127.0.0.1:{port}/0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_named(tmp_path: Path):
    port = free_port()
    proc = opsgate(
        tmp_path,
        "jobs",
        "list",
        OPSGATE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/none",
    )
    assert proc.returncode == 3
    assert (
        f"database unreachable at postgresql+psycopg://postgres@127.0.0.1:{port}/none"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_unknown_job_is_a_clear_error(tmp_path: Path):
    proc = opsgate(tmp_path, "jobs", "show", "does-not-exist")
    assert proc.returncode == 2 and "no job 'does-not-exist'" in proc.stderr


def test_keys_create_scopes_a_key_to_workflows(tmp_path: Path):
    created = opsgate(
        tmp_path,
        "keys",
        "create",
        "finance",
        "--role",
        "reviewer",
        "--workflow",
        "invoice_exception",
        "--workflow",
        "it_request",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("og_")
    assert "(reviewer, invoice_exception, it_request)" in created.stderr
    assert opsgate(tmp_path, "keys", "create", "support", "--role", "reviewer").returncode == 0

    listed = opsgate(tmp_path, "keys", "list", "--json")
    # Wide enough that rich does not wrap the cells.
    table = opsgate(tmp_path, "keys", "list", COLUMNS="200")

    scopes = {k["name"]: k["workflows"] for k in json.loads(listed.stdout)}
    assert scopes == {"finance": ["invoice_exception", "it_request"], "support": None}
    assert "every workflow" in table.stdout and "invoice_exception" in table.stdout


def test_keys_create_refuses_an_unknown_workflow_in_one_line(tmp_path: Path):
    proc = opsgate(
        tmp_path, "keys", "create", "finance", "--role", "reviewer", "--workflow", "payroll"
    )

    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: unknown workflow 'payroll'; known: invoice_exception, it_request, support_refund"
    )
    assert json.loads(opsgate(tmp_path, "keys", "list", "--json").stdout) == []
