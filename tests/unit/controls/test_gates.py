"""app/controls/gates.py: the gates in order, on the repository's policy, real Redis and SQLite.

The first gate that stops a call decides: a policy block or a missing approval escalates
before the kill switch is asked, a parked call spends no rate limit, and a read outside the
catalog passes the breaker only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from app.controls import breaker, gates, ratelimit
from app.core import broker
from app.errors import CircuitOpen, EscalationRequired, KillSwitchEngaged
from app.jobs.steps import StoredStep
from app.settings import PROJECT_ROOT, get_settings
from tests.support.env import reset_process_state

REFUND = {"charge_id": "ch_1001", "amount": 2500, "currency": "usd", "reason": "duplicate"}


@pytest.fixture
def world(
    sqlite_db: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """The repository's config/ copied to a folder of the test's own, with the kill switch
    file edited; real Redis for the rate limit, the breaker and the runtime switches."""
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    redis.Redis.from_url(redis_db_url).flushdb()

    def configure(killswitch: str = "global: false\n") -> Path:
        folder = sqlite_db.parent / "config"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(PROJECT_ROOT / "config", folder)
        (folder / "killswitch.yaml").write_text(killswitch)
        monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(folder))
        get_settings.cache_clear()
        reset_process_state()
        return folder

    configure()
    return configure


def step(tool: str, args: dict[str, Any]) -> StoredStep:
    return StoredStep(
        pk=1,
        step_id="s1",
        revision=1,
        tool=tool,
        args=args,
        args_hash="0" * 64,
        idempotency_key="job-1:s1",
    )


def call(tool: str, args: dict[str, Any], *, write: bool, catalog: bool = True) -> gates.GateCall:
    return gates.GateCall(
        "support_refund",
        tool,
        args,
        system=tool.split(".", 1)[0],
        write=write,
        catalog=catalog,
        job_id="job-1",
        requester="alice@example.com",
        step=step(tool, args),
    )


def rate_limit_spent(tool: str) -> int:
    """Calls counted against the tool's rate limit (every window, app.controls.ratelimit)."""
    keys = broker.client().scan_iter(match=f"{ratelimit.PREFIX}{tool}:*")
    return sum(int(broker.client().get(k) or 0) for k in keys)


def test_an_allowed_write_passes_every_gate_with_the_policys_decision(world: Any) -> None:
    decision = gates.run(gates.GATES, call("stripe.refund", REFUND, write=True))
    assert decision is not None
    assert (decision.outcome, decision.rule) == ("allow", "autonomy_grant")
    assert rate_limit_spent("stripe.refund") == 1


def test_a_blocked_call_escalates_before_the_kill_switch_is_asked(
    world: Callable[..., Path],
) -> None:
    world("global: true\n")
    with pytest.raises(EscalationRequired) as stopped:
        gates.run(gates.GATES, call("stripe.refund", dict(REFUND, reason="fraud"), write=True))
    assert stopped.value.reason == "policy_blocked"
    assert stopped.value.evidence["rule"] == "allowed_reasons"


def test_a_call_without_its_approval_escalates_before_the_kill_switch(
    world: Callable[..., Path],
) -> None:
    world("global: true\n")
    over_the_grant = dict(REFUND, amount=9000)
    with pytest.raises(EscalationRequired) as stopped:
        gates.run(gates.GATES, call("stripe.refund", over_the_grant, write=True))
    assert stopped.value.reason == "approval_required"
    assert stopped.value.evidence["rule"] == "autonomy_cap"


def test_the_kill_switch_parks_a_call_before_it_spends_rate_limit(
    world: Callable[..., Path],
) -> None:
    world("global: false\ntools: {stripe.refund: true}\n")
    with pytest.raises(KillSwitchEngaged):
        gates.run(gates.GATES, call("stripe.refund", REFUND, write=True))
    assert rate_limit_spent("stripe.refund") == 0


def test_the_kill_switch_stops_catalog_reads_but_not_reads_outside_the_catalog(
    world: Callable[..., Path],
) -> None:
    world("global: true\n")
    with pytest.raises(KillSwitchEngaged):
        gates.run(gates.AT_CALL, call("zendesk.get_ticket", {"ticket_id": 1}, write=False))
    comments = call("zendesk.comments", {"ticket_id": 1}, write=False, catalog=False)
    assert gates.run(gates.AT_CALL, comments) is None


def test_an_open_breaker_parks_reads_outside_the_catalog_too(world: Any) -> None:
    for _ in range(50):
        breaker.record("zendesk", ok=False)
    comments = call("zendesk.comments", {"ticket_id": 1}, write=False, catalog=False)
    with pytest.raises(CircuitOpen):
        gates.run(gates.AT_CALL, comments)


def test_the_gates_before_the_call_need_the_plan_step(world: Any) -> None:
    no_step = gates.GateCall("support_refund", "stripe.refund", REFUND, "stripe", write=True)
    with pytest.raises(ValueError, match="not a plan step"):
        gates.run(gates.BEFORE_CALL, no_step)
