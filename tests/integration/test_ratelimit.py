"""Fleet-wide rate limits per tool: counted in Redis, a job over the limit parks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from app.controls import ratelimit
from app.core.db import session_scope
from app.errors import RateLimited
from app.jobs import lifecycle
from app.models import Job, JobEvent
from tests.support.env import ROOT, reset_process_state
from tests.support.jobs import submit_refund_jobs
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.integration


def test_the_second_call_in_a_second_is_refused(clean_env, redis_db_url, monkeypatch):
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    reset_process_state()
    for _ in range(3):  # a pair may straddle a window boundary; three pairs cannot all do
        ratelimit.acquire("okta.reset_password", 1, write=True)
        try:
            ratelimit.acquire("okta.reset_password", 1, write=True)
        except RateLimited as exc:
            assert exc.system == "okta.reset_password" and "1 calls per second" in exc.why
            return
    raise AssertionError("the limit never refused a call")


def test_without_redis_a_limited_write_fails_closed(clean_env, monkeypatch):
    monkeypatch.setenv("OPSGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_process_state()
    ratelimit.acquire("zendesk.get_ticket", 1, write=False)
    with pytest.raises(RateLimited, match="fail closed"):
        ratelimit.acquire("stripe.refund", 1, write=True)


def test_jobs_over_the_limit_park_and_finish(
    pg_env, sandbox, start_worker, tmp_path: Path, monkeypatch
):
    # Given a policy allowing one charge read per second for the whole fleet
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    policy = config / "policy.yaml"
    policy.write_text(policy.read_text() + "  stripe.get_charge: {per_second: 1}\n")
    monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(config))
    reset_process_state()
    start_worker("--beat", env={"OPSGATE_REAPER_INTERVAL": "1"})
    # When eight refund jobs reach verification together
    ids = submit_refund_jobs(sandbox.refund_cases(8), "rl", "zendesk")

    def done() -> bool:
        with session_scope() as s:
            return all(s.get(Job, j).status == lifecycle.COMPLETED for j in ids)

    # Then they all complete, and the ones over the limit were parked on the way
    wait_for(done, timeout=120, what="all eight jobs to complete")
    with session_scope() as s:
        reasons = s.scalars(
            select(JobEvent.reason).where(
                JobEvent.job_id.in_(ids), JobEvent.to_status == lifecycle.PAUSED
            )
        ).all()
    assert reasons and all(r.startswith("rate_limited: stripe.get_charge") for r in reasons)
    assert len(sandbox.applied("stripe")) == 8
