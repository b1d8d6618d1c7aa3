"""app/controls/at_call.py: the gates at the call in one round trip to the real Redis, with the
semantics of the gates asked in turn (app.controls.gates.AT_CALL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from app.controls import at_call, breaker, gates, killswitch, ratelimit
from app.controls.calls import CallRecorder
from app.core import broker
from app.core.db import session_scope
from app.errors import CircuitOpen, KillSwitchEngaged, RateLimited
from tests.support.env import reset_process_state
from tests.support.processes import free_port

REFUND = {"charge_id": "ch_1001", "amount": 2500, "currency": "usd", "reason": "duplicate"}


@pytest.fixture
def fleet(sqlite_db: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """SQLite for the switches' history, the test's own Redis database, emptied."""
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    reset_process_state()
    client = redis.Redis.from_url(redis_db_url)
    client.flushdb()
    return client


def call(tool: str, *, write: bool, catalog: bool = True) -> gates.GateCall:
    return gates.GateCall(
        "support_refund", tool, {}, system=tool.split(".", 1)[0], write=write, catalog=catalog
    )


def engage(scope: str) -> None:
    with session_scope() as session:
        killswitch.engage(session, scope, "alice", "incident 42")
        session.commit()


def spent(client: redis.Redis, tool: str) -> int:
    return sum(int(client.get(k) or 0) for k in client.scan_iter(f"{ratelimit.PREFIX}{tool}:*"))


def commands_sent(client: redis.Redis, action: Any) -> list[str]:
    """The commands the process's Redis client sent while `action` ran, as the server's
    MONITOR saw them (other clients and the scripts' own commands left out)."""
    ours = broker.client()
    ours.ping()  # the client's connection exists before we ask for its address
    address = ours.client_info()["addr"]
    marker = "at-call-test-done"
    with client.monitor() as monitor:
        action()
        ours.echo(marker)
        seen: list[str] = []
        for entry in monitor.listen():
            if f"{entry['client_address']}:{entry['client_port']}" != address:
                continue
            if marker in entry["command"]:
                return seen
            seen.append(entry["command"].split(" ", 1)[0].upper())
    raise AssertionError("MONITOR ended before the marker")


def test_a_catalog_write_costs_one_round_trip_before_the_call_and_one_after(
    fleet: redis.Redis,
) -> None:
    # Given a recorder whose scripts are already loaded (the first call of a process loads them)
    recorder = CallRecorder("execute", workflow="support_refund")
    recorder.run("stripe.refund", "stripe", "svc", {"args": REFUND}, dict, write=True, catalog=True)

    # When it makes one more write to a catalog tool
    sent = commands_sent(
        fleet,
        lambda: recorder.run(
            "stripe.refund", "stripe", "svc", {"args": REFUND}, dict, write=True, catalog=True
        ),
    )

    # Then the kill switch, the rate limit and the breaker were one script, the count another
    assert sent == ["EVALSHA", "EVALSHA"]
    assert spent(fleet, "stripe.refund") == 2


def test_an_engaged_switch_parks_before_rate_limit_or_a_probe_is_spent(
    fleet: redis.Redis,
) -> None:
    engage("tool:stripe.refund")
    with pytest.raises(KillSwitchEngaged) as stopped:
        at_call.check(call("stripe.refund", write=True))
    assert stopped.value.scope == "tool:stripe.refund"
    assert "alice" in stopped.value.why
    assert spent(fleet, "stripe.refund") == 0
    # Another tool goes through, spending its own rate limit.
    at_call.check(call("zendesk.add_comment", write=True))


def test_a_redis_that_lost_the_switches_reloads_them_before_the_call(fleet: redis.Redis) -> None:
    engage("global")
    fleet.flushdb()
    with pytest.raises(KillSwitchEngaged) as stopped:
        at_call.check(call("zendesk.get_ticket", write=False))
    assert stopped.value.scope == "global"
    assert fleet.hexists(killswitch.KEY, killswitch.LOADED)


def test_the_rate_limit_refuses_before_the_breaker_is_asked(
    fleet: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.controls.policy.rate_limit", lambda tool: 1)
    for _ in range(3):  # a pair may straddle a window boundary; three pairs cannot all do
        at_call.check(call("okta.reset_password", write=True))
        try:
            at_call.check(call("okta.reset_password", write=True))
        except RateLimited as exc:
            assert exc.system == "okta.reset_password" and "1 calls per second" in exc.why
            assert not fleet.exists(breaker._keys("okta")[1])  # no probe counted
            return
    raise AssertionError("the limit never refused a call")


def test_an_open_breaker_parks_catalog_calls_and_reads_outside_the_catalog(
    fleet: redis.Redis,
) -> None:
    for _ in range(50):
        breaker.record("zendesk", ok=False)
    with pytest.raises(CircuitOpen):
        at_call.check(call("zendesk.get_ticket", write=False))
    with pytest.raises(CircuitOpen):
        at_call.check(call("zendesk.comments", write=False, catalog=False))
    at_call.check(call("stripe.get_charge", write=False))


def test_a_read_outside_the_catalog_ignores_switches_and_rate_limits(fleet: redis.Redis) -> None:
    engage("global")
    at_call.check(call("zendesk.comments", write=False, catalog=False))
    assert spent(fleet, "zendesk.comments") == 0


def test_without_redis_reads_go_ahead_and_writes_fail_closed(
    sqlite_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_process_state()
    at_call.check(call("zendesk.get_ticket", write=False))
    at_call.check(call("zendesk.comments", write=False, catalog=False))
    with pytest.raises(KillSwitchEngaged, match="fail closed"):
        at_call.check(call("stripe.refund", write=True))
    with pytest.raises(CircuitOpen, match="fail closed"):
        at_call.check(call("zendesk.note", write=True, catalog=False))


def test_the_round_trip_covers_exactly_the_gates_at_the_call() -> None:
    # A gate added to AT_CALL must be added to the script too (or the recorder skips it).
    assert [type(g) for g in gates.AT_CALL] == [
        gates.KillSwitchGate,
        gates.RateLimitGate,
        gates.BreakerGate,
    ]
