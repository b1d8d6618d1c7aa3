"""`opsgate demo` on the embedded defaults (SQLite + embedded redis-server), as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.demo import EXPECTED, run_demo
from tests.support.env import OPSGATE_VARS, ROOT

pytestmark = pytest.mark.e2e


def test_demo_runs_twice_on_embedded_defaults_with_the_same_outcomes(tmp_path: Path):
    # When a new user runs the demo twice in a row in an empty directory
    first = run_demo(tmp_path, "--json")
    assert first.returncode == 0, first.stderr
    second = run_demo(tmp_path, "--json")
    assert second.returncode == 0, second.stderr
    # Then both runs settle every job with the expected outcome
    for proc in (first, second):
        result = json.loads(proc.stdout)
        assert not result["timed_out"]
        outcomes = {r["file"]: (r["status"], r["reason"]) for r in result["rows"]}
        assert outcomes == EXPECTED
        rows = {r["file"]: r for r in result["rows"]}
        assert rows["09-duplicate-delivery.json"]["duplicate"] is True
        assert (
            rows["09-duplicate-delivery.json"]["job_id"] == rows["01-clean-refund.json"]["job_id"]
        )
        # Three refunds and three internal notes, whatever the duplicate delivery did; two
        # invoice holds; one password reset and one group membership
        assert result["applied_writes"] == {"stripe": 3, "zendesk": 3, "salesforce": 2, "okta": 2}
        # Every workflow shows, and a completed job says what it did
        assert {r["workflow"] for r in result["rows"]} == {
            "support_refund",
            "invoice_exception",
            "it_request",
        }
        assert "Hold" in rows["10-invoice-amount-off-po.json"]["detail"]
    # And the runs are distinct (new run id, new jobs), on the embedded SQLite file
    assert json.loads(first.stdout)["run_id"] != json.loads(second.stdout)["run_id"]
    assert (tmp_path / "var" / "opsgate.db").exists()
    # And the embedded redis-server it started is stopped again
    assert not (tmp_path / "var" / "redis.pid").exists()


def test_demo_prints_a_table_for_people(tmp_path: Path):
    proc = run_demo(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "approval_required" in proc.stdout and "duplicate delivery" in proc.stdout
    assert "writes applied in the sandbox: 2 okta, 2 salesforce, 3 stripe, 3 zendesk" in proc.stdout
    assert "settled 17/17 jobs" in proc.stderr  # progress is shown while it works


def test_cli_reads_what_the_demo_left(tmp_path: Path):
    assert run_demo(tmp_path, "--json").returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    listed = subprocess.run(
        [sys.executable, "-m", "app", "jobs", "list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    jobs = json.loads(listed.stdout)
    assert len(jobs) == 17 and {j["status"] for j in jobs} == {"completed", "escalated"}
    completed = next(
        j for j in jobs if j["status"] == "completed" and j["workflow"] == "support_refund"
    )
    shown = subprocess.run(
        [sys.executable, "-m", "app", "jobs", "show", completed["id"][:8], "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    detail = json.loads(shown.stdout)
    assert [s["status"] for s in detail["steps"]] == ["succeeded", "succeeded"]
    assert [e["to"] for e in detail["events"]][-1] == "completed"
    escalations = subprocess.run(
        [sys.executable, "-m", "app", "escalations", "list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    reasons = sorted(e["reason"] for e in json.loads(escalations.stdout))
    assert reasons == sorted(r for status, r in EXPECTED.values() if status == "escalated")
    assert ROOT.exists()
