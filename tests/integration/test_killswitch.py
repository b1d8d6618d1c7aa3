"""The kill switch: config and runtime scopes, the fleet obeying under load (asserted by
order), parked jobs resuming on release, and the switch surviving a Redis that forgot it."""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from app.controls import killswitch
from app.core import broker
from app.core.db import session_scope
from app.errors import InputError, KillSwitchEngaged
from app.jobs import lifecycle
from app.models import Job, KillSwitchEvent, PlanStep
from tests.support.env import ROOT, reset_process_state
from tests.support.jobs import submit_refund_jobs
from tests.support.processes import wait_for
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.integration

FAST = {
    "OPSGATE_CLAIM_LEASE": "2",
    "OPSGATE_STALE_AFTER": "3",
    "OPSGATE_REAPER_INTERVAL": "1",
    "OPSGATE_OUTBOX_GRACE": "0",
}


def flip(session_actor: str, engaged: bool, reason: str = "drill", **scope: str) -> None:
    with session_scope() as s:
        target = killswitch.scope_of(scope.get("workflow"), scope.get("tool"))
        if engaged:
            killswitch.engage(s, target, session_actor, reason)
        else:
            killswitch.release(s, target, session_actor, reason)
        s.commit()


def blocked(workflow: str, tool: str, *, write: bool = True) -> str | None:
    try:
        killswitch.check(workflow, tool, write=write)
    except KillSwitchEngaged as exc:
        return exc.scope
    return None


def test_runtime_switches_cover_their_scope_and_record_who(pg_env: dict[str, str]) -> None:
    assert blocked("support_refund", "stripe.refund") is None
    flip("cli:ops@host", True, tool="stripe.refund")
    assert blocked("support_refund", "stripe.refund") == "tool:stripe.refund"
    assert blocked("support_refund", "zendesk.add_comment") is None
    flip("cli:ops@host", True, workflow="support_refund")
    assert blocked("support_refund", "zendesk.add_comment") == "workflow:support_refund"
    assert blocked("it_request", "okta.get_user", write=False) is None
    flip("key:admin", True)
    assert blocked("it_request", "okta.get_user", write=False) == "global"
    [row] = [r for r in killswitch.status() if r["scope"] == "global"]
    assert (row["source"], row["by"], row["reason"]) == ("runtime", "key:admin", "drill")
    for scope in ({}, {"workflow": "support_refund"}, {"tool": "stripe.refund"}):
        flip("cli:ops@host", False, **scope)
    assert blocked("support_refund", "stripe.refund") is None
    with session_scope() as s:
        events = s.execute(
            select(KillSwitchEvent.scope, KillSwitchEvent.engaged, KillSwitchEvent.actor)
        ).all()
    assert len(events) == 6 and ("global", True, "key:admin") in events


def test_either_config_or_runtime_saying_on_means_on(
    pg_env: dict[str, str], tmp_path: Path, monkeypatch: Any
) -> None:
    import shutil

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "killswitch.yaml").write_text(yaml.safe_dump({"tools": {"okta.suspend_user": True}}))
    monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(config))
    reset_process_state()
    assert blocked("it_request", "okta.suspend_user") == "tool:okta.suspend_user"
    # Releasing at runtime does not override the file
    flip("cli:ops@host", False, tool="okta.suspend_user")
    assert blocked("it_request", "okta.suspend_user") == "tool:okta.suspend_user"
    assert {"scope": "tool:okta.suspend_user", "source": "config"} in killswitch.status()


def test_a_redis_that_lost_the_switch_gets_it_back_from_the_event_history(
    pg_env: dict[str, str],
) -> None:
    flip("cli:ops@host", True, tool="stripe.refund", reason="incident 42")
    # When Redis forgets everything (a restart without persistence)
    broker.client().delete(killswitch.KEY)
    # Then the switch is still on, rebuilt from the recorded flips
    assert blocked("support_refund", "stripe.refund") == "tool:stripe.refund"
    flip("cli:ops@host", False, tool="stripe.refund")
    broker.client().delete(killswitch.KEY)
    assert blocked("support_refund", "stripe.refund") is None


def test_unreadable_switch_fails_closed_for_writes_only(
    pg_env: dict[str, str], monkeypatch: Any
) -> None:
    from tests.support.processes import free_port

    monkeypatch.setenv("OPSGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_process_state()
    assert blocked("support_refund", "stripe.refund") == "unknown"
    assert blocked("support_refund", "zendesk.get_ticket", write=False) is None


def test_bad_scopes_are_refused_with_a_clear_error(pg_env: dict[str, str]) -> None:
    with pytest.raises(InputError, match="unknown workflow 'nope'"):
        killswitch.scope_of("nope", None)
    with pytest.raises(InputError, match="unknown tool"):
        killswitch.scope_of(None, "stripe.nuke")
    with pytest.raises(InputError, match="not both"):
        killswitch.scope_of("support_refund", "stripe.refund")


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "killswitch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def counts(job_ids: list[str]) -> collections.Counter[str]:
    with session_scope() as s:
        return collections.Counter(s.scalars(select(Job.status).where(Job.id.in_(job_ids))).all())


def in_flight(job_ids: list[str]) -> set[tuple[str, str]]:
    with session_scope() as s:
        rows = s.execute(
            select(PlanStep.job_id, PlanStep.step_id).where(
                PlanStep.job_id.in_(job_ids), PlanStep.status == "claimed"
            )
        ).all()
    return {(r.job_id, r.step_id) for r in rows}


def test_the_fleet_obeys_the_switch_under_load_and_resumes_everything_after(
    pg_env: dict[str, str], sandbox: Sandbox, start_worker: Any
) -> None:
    # Given 100 refund jobs in flight against a slow Stripe, on two worker processes
    cases = sandbox.refund_cases(100)
    httpx.post(
        f"{sandbox.url}/_sandbox/faults", json={"system": "stripe", "latency_ms": 500}, timeout=10
    ).raise_for_status()
    start_worker("--beat", env=FAST)
    start_worker(env=FAST)
    job_ids = submit_refund_jobs(cases, "drill", "drill")
    wait_for(lambda: counts(job_ids)[lifecycle.COMPLETED] >= 3, timeout=60, what="some progress")
    # When the global switch is engaged (what the CLI and the API call; in-process here so
    # the engage is not late by a CLI start-up on a loaded machine; `off` goes through the CLI)
    flip("cli:ops@host", True)
    # Steps first, then the ledger: a write that lands after this ledger read belongs to a
    # step already claimed (and checked) before the engage, so it is in this set.
    claimed_at_engage = in_flight(job_ids)
    writes_at_engage = len(sandbox.ledger())

    # Then, once the calls already past their check return, every unfinished job parks
    def quiet() -> bool:
        c = counts(job_ids)
        return not in_flight(job_ids) and c[lifecycle.PAUSED] + c[lifecycle.COMPLETED] == len(
            job_ids
        )

    wait_for(quiet, timeout=60, what=f"the fleet to stop ({dict(counts(job_ids))})")
    settled_writes = len(sandbox.ledger())
    # Order, not time: the only writes after the engage are of steps already claimed then
    # (their check ran before it); no other call went out
    assert settled_writes - writes_at_engage <= len(claimed_at_engage)
    # And nothing leaks while it stays on, through several reaper passes
    stopped = counts(job_ids)
    with session_scope() as s:
        reasons = s.scalars(
            select(Job.status_reason).where(Job.id.in_(job_ids), Job.status == lifecycle.PAUSED)
        ).all()
    assert stopped[lifecycle.PAUSED] > 0
    assert all(r and r.startswith("kill_switch: global") for r in reasons), reasons[:3]
    time.sleep(4)  # four reaper passes (OPSGATE_REAPER_INTERVAL=1); not a timing assertion
    assert len(sandbox.ledger()) == settled_writes
    assert counts(job_ids) == stopped
    # When it is released, every parked job completes, each refund exactly once
    out = cli("off", "--reason", "drill over")
    assert "released" in out
    wait_for(
        lambda: counts(job_ids)[lifecycle.COMPLETED] == len(job_ids),
        timeout=120,
        what=f"every job to complete ({dict(counts(job_ids))})",
    )
    refunds = collections.Counter(w["body"]["charge"] for w in sandbox.applied("stripe"))
    assert len(refunds) == len(job_ids) and max(refunds.values()) == 1
    with session_scope() as s:
        flips = s.scalar(select(func.count()).select_from(KillSwitchEvent))
    assert flips == 2


def test_the_cli_engages_shows_and_releases_a_switch(pg_env: dict[str, str]) -> None:
    import json

    assert "ENGAGED" in cli("on", "--tool", "stripe.refund", "--reason", "drill")
    assert blocked("support_refund", "stripe.refund") == "tool:stripe.refund"
    [row] = json.loads(cli("status", "--json"))["engaged"]
    assert (row["scope"], row["source"], row["reason"]) == (
        "tool:stripe.refund",
        "runtime",
        "drill",
    )
    assert row["by"].startswith("cli:")
    assert "released" in cli("off", "--tool", "stripe.refund")
    assert blocked("support_refund", "stripe.refund") is None
    bad = subprocess.run(
        [sys.executable, "-m", "app", "killswitch", "on", "--workflow", "nope", "--reason", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown workflow 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr
