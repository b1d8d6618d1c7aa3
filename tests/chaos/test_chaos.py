"""Chaos: kill workers inside tool calls, restart Redis and PostgreSQL, storm a system with 5xx.

The assertion is always the same: every accepted job ends in a terminal or parked state, and
no side effect happens twice (the sandbox's ledger counts applied writes).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.audit import verify
from app.controls import breaker
from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Job, PlanStep, ToolCall
from tests.support.jobs import submit_refund_jobs
from tests.support.processes import wait_for
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.chaos

SETTLED = lifecycle.TERMINAL | {lifecycle.ESCALATED, lifecycle.PAUSED}
# Fast recovery knobs: short claim leases and a reaper that notices stalls within seconds.
FAST = {
    "OPSGATE_CLAIM_LEASE": "2",
    "OPSGATE_STALE_AFTER": "3",
    "OPSGATE_REAPER_INTERVAL": "1",
    "OPSGATE_OUTBOX_GRACE": "0",
    "OPSGATE_HTTP_TIMEOUT": "5",
    "OPSGATE_RETRY_BUDGET": "60",
    "OPSGATE_MAX_DELIVERIES": "60",
    "OPSGATE_RETRY_MAX": "30",
}


def faults(sandbox: Sandbox, **spec: Any) -> None:
    httpx.post(f"{sandbox.url}/_sandbox/faults", json=spec, timeout=10).raise_for_status()


def clear_faults(sandbox: Sandbox) -> None:
    httpx.delete(f"{sandbox.url}/_sandbox/faults", timeout=10).raise_for_status()


def statuses(job_ids: list[str]) -> collections.Counter[str]:
    with session_scope() as s:
        rows = s.execute(select(Job.status).where(Job.id.in_(job_ids))).scalars().all()
    return collections.Counter(rows)


def describe_unsettled(job_ids: list[str]) -> str:
    """What each job that has not settled is doing: the failure message of a chaos test."""
    with session_scope() as s:
        rows = s.execute(
            select(
                Job.id,
                Job.status,
                Job.status_reason,
                Job.resume_status,
                Job.resume_at,
                Job.updated_at,
                Job.retries,
            ).where(Job.id.in_(job_ids), Job.status.not_in(SETTLED - {lifecycle.PAUSED}))
        ).all()
        steps = s.execute(
            select(PlanStep.job_id, PlanStep.tool, PlanStep.status).where(
                PlanStep.job_id.in_([r.id for r in rows])
            )
        ).all()
    by_job = collections.defaultdict(list)
    for st in steps:
        by_job[st.job_id].append(f"{st.tool}={st.status}")
    return "\n".join(f"{tuple(r)} steps={by_job[r.id]}" for r in rows)


def wait_all_finished(job_ids: list[str]) -> None:
    """Wait until every job settled with none parked; fail with what each straggler does."""
    try:
        wait_for(
            lambda: all_settled(job_ids) and statuses(job_ids)[lifecycle.PAUSED] == 0,
            timeout=240,
            interval=0.5,
            what="every job to finish",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; unsettled:\n{describe_unsettled(job_ids)}") from None


def all_settled(job_ids: list[str]) -> bool:
    counts = statuses(job_ids)
    return sum(n for st, n in counts.items() if st in SETTLED) == len(job_ids)


def assert_no_double_effects(sandbox: Sandbox, job_ids: list[str]) -> None:
    applied = sandbox.applied()
    refunds = collections.Counter(w["body"]["charge"] for w in applied if w["system"] == "stripe")
    assert refunds and max(refunds.values()) == 1, refunds.most_common(3)
    notes = collections.Counter(w["path"] for w in applied if w["system"] == "zendesk")
    assert max(notes.values(), default=1) == 1, notes.most_common(3)
    # Every completed job refunded exactly its own charge
    with session_scope() as s:
        done = s.scalars(
            select(PlanStep.args)
            .join(Job, Job.id == PlanStep.job_id)
            .where(
                Job.id.in_(job_ids),
                Job.status == lifecycle.COMPLETED,
                PlanStep.tool == "stripe.refund",
            )
        ).all()
    assert {a["charge_id"] for a in done} <= set(refunds)


def test_sigkill_of_the_executor_inside_tool_calls_never_doubles_a_write(
    pg_env, sandbox, start_worker
):
    # Given slow downstream writes that sometimes commit and then drop the connection
    cases = sandbox.refund_cases(60)
    faults(sandbox, system="stripe", latency_ms=300, commit_then_drop_rate=0.3, seed=11)
    faults(sandbox, system="zendesk", latency_ms=200, commit_then_drop_rate=0.3, seed=12)
    start_worker("--queues", "plan,verify,human,maintenance", "--beat", env=FAST)
    job_ids = submit_refund_jobs(cases, "kill", "chaos")
    rng = random.Random(5)
    kills = 0
    # When the execute worker is SIGKILLed 20 times, each time while a step is in flight
    for _ in range(20):
        # One thread, so each life of the executor ends inside its first or second call.
        victim = start_worker("--queues", "execute", "--concurrency", "1", env=FAST)

        def in_flight() -> bool:
            with session_scope() as s:
                return bool(
                    s.scalar(
                        select(func.count())
                        .select_from(PlanStep)
                        .where(PlanStep.status == "claimed", PlanStep.job_id.in_(job_ids))
                    )
                )

        wait_for(
            in_flight,
            timeout=30,
            interval=0.02,
            what=f"a step in flight after {kills} kills ({dict(statuses(job_ids))})",
        )
        # The sandbox holds each write 200-300 ms: a kill now lands inside the call, before
        # or after the sandbox commits it.
        if rng.random() < 0.5:
            wait_for(lambda: len(sandbox.ledger()) > 0, timeout=5, interval=0.05)
        os.killpg(victim.popen.pid, signal.SIGKILL)
        victim.popen.wait(10)
        kills += 1
    # Then, with a healthy executor again, every job settles and nothing happened twice
    clear_faults(sandbox)
    start_worker("--queues", "execute", "--concurrency", "4", env=FAST)
    wait_for(lambda: all_settled(job_ids), timeout=240, interval=0.5, what="every job to settle")
    assert kills == 20
    assert_no_double_effects(sandbox, job_ids)
    counts = statuses(job_ids)
    assert counts[lifecycle.COMPLETED] + counts[lifecycle.ESCALATED] == len(job_ids), counts
    # The drops really happened: some writes were applied without the answer getting back
    dropped = [w for w in sandbox.ledger() if w.get("fault") == "dropped_after_commit"]
    assert dropped


def test_redis_restart_under_load_completes_every_job_once(
    pg_env, sandbox, own_redis, start_worker, monkeypatch
):
    from tests.support.env import reset_process_state

    monkeypatch.setenv("OPSGATE_REDIS_URL", own_redis.url)
    reset_process_state()
    env = {**FAST, "OPSGATE_REDIS_URL": own_redis.url}
    cases = sandbox.refund_cases(24)
    faults(sandbox, system="stripe", latency_ms=100)
    start_worker("--beat", env=env)
    start_worker(env=env)
    job_ids = submit_refund_jobs(cases, "redis", "chaos")
    # When Redis goes away (losing every queued message) and comes back, twice
    for _ in range(2):
        wait_for(
            lambda: statuses(job_ids)[lifecycle.COMPLETED] >= 3 or all_settled(job_ids),
            timeout=60,
            what="some progress",
        )
        own_redis.stop()
        own_redis.start()
    # Then every job completes (a write that met Redis down parked, failing closed, and
    # resumed), and no refund or note was written twice
    wait_all_finished(job_ids)
    assert statuses(job_ids)[lifecycle.COMPLETED] == len(job_ids), statuses(job_ids)
    assert_no_double_effects(sandbox, job_ids)
    assert len(sandbox.applied("stripe")) == len(job_ids)


def test_postgres_restart_under_load_completes_every_job_once(own_postgres, sandbox, start_worker):
    cases = sandbox.refund_cases(24)
    faults(sandbox, system="stripe", latency_ms=100)
    faults(sandbox, system="zendesk", latency_ms=100)
    # The reaper would re-publish a dropped stage message only after ten minutes: jobs finish
    # here because a task that loses its database connection is retried, not dropped.
    env = {**FAST, "OPSGATE_STALE_AFTER": "600"}
    start_worker("--beat", env=env)
    start_worker(env=env)
    job_ids = submit_refund_jobs(cases, "postgres", "chaos")
    wait_for(
        lambda: statuses(job_ids)[lifecycle.COMPLETED] >= 3 or all_settled(job_ids),
        timeout=60,
        what="some progress",
    )
    unsettled = len(job_ids) - sum(statuses(job_ids)[st] for st in SETTLED)
    # When PostgreSQL stops (fast: every open connection is cut) with jobs in flight, stays
    # down a few seconds and comes back
    own_postgres.stop("fast")
    time.sleep(4)
    own_postgres.start()
    # Then every job completes (none fails or escalates for the outage), and no refund or
    # note was written twice
    assert unsettled > 0
    wait_all_finished(job_ids)
    assert statuses(job_ids)[lifecycle.COMPLETED] == len(job_ids), statuses(job_ids)
    assert_no_double_effects(sandbox, job_ids)
    assert len(sandbox.applied("stripe")) == len(job_ids)
    # And the audit trail written across the outage verifies
    with session_scope() as s:
        assert verify.whole_trail(s) == []


def test_a_5xx_storm_opens_the_breaker_for_the_fleet_and_jobs_finish_after(
    pg_env, sandbox, start_worker
):
    env = {
        **FAST,
        "OPSGATE_BREAKER_MIN_CALLS": "6",
        "OPSGATE_BREAKER_FAILURE_RATE": "0.5",
        "OPSGATE_BREAKER_OPEN_SECONDS": "2",
        "OPSGATE_BREAKER_PROBES": "1",
        "OPSGATE_BREAKER_WINDOW": "20",
    }
    breaker.reset("stripe")
    cases = sandbox.refund_cases(20)
    # Given Stripe answering 503 to half of all requests
    faults(sandbox, system="stripe", error_rate=0.5, error_status=503, seed=3)
    start_worker("--beat", env=env)
    start_worker(env=env)  # a second process: the breaker is shared, not per process
    job_ids = submit_refund_jobs(cases, "storm", "chaos")
    # Then the breaker opens and jobs park instead of retrying into the storm
    wait_for(
        lambda: breaker.status("stripe").get("state") in ("open", "half_open"),
        timeout=60,
        what="the breaker to open",
    )

    def parked() -> int:
        with session_scope() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.id.in_(job_ids), Job.status_reason.like("circuit_open: stripe%"))
                )
                or 0
            )

    wait_for(parked, timeout=60, what="a job parked behind the breaker")
    with session_scope() as s:
        during = int(
            s.scalar(select(func.count()).select_from(ToolCall).where(ToolCall.system == "stripe"))
            or 0
        )
    # When the storm ends, the next probe closes the breaker and parked jobs resume
    clear_faults(sandbox)
    wait_all_finished(job_ids)
    assert statuses(job_ids)[lifecycle.COMPLETED] == len(job_ids), statuses(job_ids)
    assert_no_double_effects(sandbox, job_ids)
    # Without a breaker each job would spend its whole retry budget against Stripe
    assert during < len(job_ids) * int(FAST["OPSGATE_RETRY_BUDGET"]) // 4
