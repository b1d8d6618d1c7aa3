"""Model-planned jobs end to end: real worker processes, PostgreSQL, Redis, the sandbox and
the scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select

from app.audit import chain as audit
from app.controls import breaker
from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import AuditEvent, Escalation, Job, ModelCall, ToolCall
from tests.support.env import ROOT
from tests.support.jobs import settle, submit_ticket
from tests.support.model_server import ModelServer
from tests.support.sandbox import GROUNDED_TICKET, Sandbox

pytestmark = pytest.mark.e2e


def submit(ticket: int, requester: int, delivery: str) -> str:
    return submit_ticket(ticket, requester, delivery)


def settled(job_id: str) -> str:
    return settle(job_id)


def verdict(confidence: float, supported: bool = True) -> dict[str, Any]:
    """A scripted answer of the soft check's model judge."""
    return {
        "match": "opsgate soft check",
        "content": {
            "supported": supported,
            "confidence": confidence,
            "reasons": [f"judged at {confidence}"],
        },
        "usage": {"prompt_tokens": 900, "completion_tokens": 40},
    }


def plan_for(tool: str, args: dict[str, Any], ticket: int) -> dict[str, Any]:
    return {
        "workflow": "support_refund",
        "summary": f"{tool} for ticket {ticket}",
        "confidence": 0.93,
        "steps": [
            {
                "tool": tool,
                "args": args,
                "rationale": "as the ticket asks",
                "evidence": [f"ticket:{ticket}", "policy:refunds#eligibility"],
            }
        ],
        "escalate": None,
    }


GROUNDED = GROUNDED_TICKET


@pytest.fixture
def fleet(pg_env, model_server: ModelServer, sandbox: Sandbox, start_worker) -> ModelServer:
    for model in ("gpt-4o-mini", "gpt-4o"):
        breaker.reset(f"model:{model}")
    sandbox.add_tickets(GROUNDED)
    start_worker()
    return model_server


def test_a_ticket_the_rules_cannot_plan_is_planned_by_the_model_and_done(
    fleet: ModelServer, sandbox: Sandbox
) -> None:
    # Given a ticket with no stated amount (the rules tier passes) and a model that plans it
    fleet.script(
        {
            "match": "ch_1003",
            "content": plan_for(
                "stripe.refund",
                {
                    "charge_id": "ch_1003",
                    "amount": 3000,
                    "currency": "usd",
                    "reason": "requested_by_customer",
                },
                4850,
            ),
            "usage": {"prompt_tokens": 2100, "completion_tokens": 180},
        },
        verdict(0.93),
    )
    job_id = submit(4850, 103, "model-1")
    # Then the job completes with the model's plan, and the refund happened once
    assert settled(job_id) == lifecycle.COMPLETED
    assert [(w["body"]["charge"], int(w["body"]["amount"])) for w in sandbox.applied("stripe")] == [
        ("ch_1003", 3000)
    ]
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.planner_tier == "small"
        call, judged = s.scalars(
            select(ModelCall).where(ModelCall.job_id == job_id).order_by(ModelCall.id)
        ).all()
        assert (call.model, call.outcome, call.input_tokens, call.output_tokens) == (
            "gpt-4o-mini",
            "ok",
            2100,
            180,
        )
        # The soft check's judge is a model call of its own, with its own prompt version
        assert (judged.outcome, judged.input_tokens) == ("ok", 900)
        assert judged.prompt_version.startswith("soft_check@")
        assert call.cost_usd > 0
        # The model call is in the job's audit chain, which verifies
        kinds = s.scalars(select(AuditEvent.kind).where(AuditEvent.job_id == job_id)).all()
        assert "model_call" in kinds
        assert audit.verify_job(s, job_id) is None
    # And `opsgate jobs show` reports the cost of the task
    shown = subprocess.run(
        [sys.executable, "-m", "app", "jobs", "show", job_id, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    detail = json.loads(shown.stdout)
    assert detail["cost_usd"] == str(call.cost_usd + judged.cost_usd)
    assert detail["model_calls"][0]["prompt_version"].startswith("planner@")


def test_a_prompt_injected_plan_never_reaches_a_tool(fleet: ModelServer, sandbox: Sandbox) -> None:
    # Given a model talked into proposing a tool the workflow may not use
    fleet.script(
        {
            "content": plan_for("okta.suspend_user", {"user_id": "00u1234567890abcdefg"}, 4826),
            "times": -1,
        }
    )
    job_id = submit(4826, 106, "inject-1")
    # Then policy stops it before any call: escalated as policy_blocked, nothing written
    assert settled(job_id) == lifecycle.ESCALATED
    with session_scope() as s:
        esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
        assert esc.reason == "policy_blocked"
        assert "okta.suspend_user" in esc.detail
        tools = s.scalars(select(ToolCall.tool).where(ToolCall.job_id == job_id)).all()
        assert all(not t.startswith("okta.") for t in tools)
    assert sandbox.applied("okta") == []
    assert sandbox.applied() == []


def test_without_a_model_endpoint_the_rules_tier_escalates_no_model(
    pg_env, sandbox: Sandbox, start_worker
) -> None:
    start_worker()
    job_id = submit(4830, 103, "nomodel-1")
    assert settled(job_id) == lifecycle.ESCALATED
    with session_scope() as s:
        esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
        assert esc.reason == "no_model"
        assert s.scalars(select(ModelCall).where(ModelCall.job_id == job_id)).all() == []


REFUND_4830 = {
    "charge_id": "ch_1003",
    "amount": 3000,
    "currency": "usd",
    "reason": "requested_by_customer",
}
REFUND_4850 = {**REFUND_4830, "reason": "requested_by_customer"}


def test_a_plan_the_judge_doubts_escalates_low_confidence_and_writes_nothing(
    fleet: ModelServer, sandbox: Sandbox
) -> None:
    # Given a valid model plan that every rule and every signal accepts, and a judge that is
    # not sure of it
    fleet.script(
        {"match": "ch_1003", "content": plan_for("stripe.refund", REFUND_4850, 4850)},
        verdict(0.55),
    )
    job_id = submit(4850, 103, "doubt-1")
    # Then the job waits for a human as low_confidence, with the judge's reasons
    assert settled(job_id) == lifecycle.ESCALATED
    with session_scope() as s:
        esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
        assert esc.reason == "low_confidence"
        assert esc.evidence["judged_by"] == "model:gpt-4o-mini"
        assert esc.evidence["confidence"] == 0.55 and esc.evidence["threshold"] == 0.85
        assert esc.evidence["reasons"] == ["judged at 0.55"]
        assert esc.evidence["step_id"] == "s1"
    assert sandbox.applied() == []


def test_when_the_judge_cannot_answer_the_deterministic_scorer_decides(
    fleet: ModelServer, sandbox: Sandbox
) -> None:
    # Given a plan for a ticket that states no amount, and a judge that only answers errors
    fleet.script(
        {"match": "ch_1003", "content": plan_for("stripe.refund", REFUND_4830, 4830)},
        {"match": "opsgate soft check", "status": 400, "times": -1},
    )
    job_id = submit(4830, 103, "nojudge-1")
    # Then the scorer judges: the amount is not one the ticket states, so a human decides
    assert settled(job_id) == lifecycle.ESCALATED
    with session_scope() as s:
        esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
        assert esc.reason == "low_confidence"
        assert esc.evidence["judged_by"] == "scorer"
        assert "judge_unavailable" in esc.evidence
        missing = [o["signal"] for o in esc.evidence["signals"] if not o["ok"]]
        assert "amount_stated" in missing
        assert esc.evidence["confidence"] < 0.85
    assert sandbox.applied() == []


def test_a_confident_judge_cannot_raise_the_scorer_or_overrule_a_critical_signal(
    fleet: ModelServer, sandbox: Sandbox
) -> None:
    # Given a plan refunding an amount the ticket never states, and a judge (on the same,
    # compromised endpoint) that approves it with full confidence
    fleet.script(
        {"match": "ch_1003", "content": plan_for("stripe.refund", REFUND_4830, 4830)},
        verdict(1.0),
    )
    job_id = submit(4830, 103, "judge-overruled-1")
    # Then the judge's verdict was used, but the scorer's lower confidence and its critical
    # signal decide: a human reviews it and nothing is written
    assert settled(job_id) == lifecycle.ESCALATED
    with session_scope() as s:
        esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
        assert esc.reason == "low_confidence"
        assert esc.evidence["judged_by"] == "model:gpt-4o-mini"
        assert esc.evidence["judge"]["confidence"] == 1.0
        assert esc.evidence["confidence"] == esc.evidence["scorer_confidence"] < 0.85
        assert esc.evidence["vetoed_by"] == ["amount_stated"]
        assert "amount_stated" in esc.detail
    assert sandbox.applied() == []


def test_a_reviewer_approves_a_doubted_plan_and_it_runs_once(
    fleet: ModelServer, sandbox: Sandbox
) -> None:
    from app.human import decisions

    fleet.script(
        {"match": "ch_1003", "content": plan_for("stripe.refund", REFUND_4850, 4850)},
        verdict(0.4),
    )
    job_id = submit(4850, 103, "doubt-approve-1")
    assert settled(job_id) == lifecycle.ESCALATED
    # When a reviewer approves the doubted step
    with session_scope() as s:
        esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
        decisions.decide(s, esc, decisions.Decision(decision="approve"), "reviewer:rita")
        s.commit()
    from app.jobs import outbox

    outbox.publish_for_job(job_id)
    # Then the plan runs without asking the judge again, and the refund happens once
    assert settled(job_id) == lifecycle.COMPLETED
    assert [int(w["body"]["amount"]) for w in sandbox.applied("stripe")] == [3000]
    with session_scope() as s:
        judged = s.scalars(
            select(ModelCall).where(
                ModelCall.job_id == job_id, ModelCall.prompt_version.like("soft_check@%")
            )
        ).all()
        assert len(judged) == 1


def test_a_judge_tier_with_its_own_endpoint_and_key_judges_there(
    pg_env,
    model_server: ModelServer,
    sandbox: Sandbox,
    start_worker,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib

    import yaml

    from tests.support.model_server import models_config_dir
    from tools.sandbox.llm.routes import serve_in_thread

    # Given a judge tier at a second OpenAI-compatible endpoint whose key is in a variable
    # that models.yaml names, and the planner at the default endpoint
    judge_url, stop = serve_in_thread()
    try:
        judge_server = ModelServer(judge_url)
        config = models_config_dir(tmp_path)
        path = config / "models.yaml"
        data = yaml.safe_load(path.read_text())
        data["tiers"]["judge"] = {
            "base_url": judge_url,
            "api_key_env": "OPSGATE_TEST_JUDGE_KEY",
            "timeout_seconds": 10,
            "max_output_tokens": 300,
            "models": [{"name": "judge-1", "input_per_million": 1, "output_per_million": 1}],
        }
        data["soft_check"] = {"tier": "judge"}
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(config))
        monkeypatch.setenv("OPSGATE_TEST_JUDGE_KEY", "sk-judge-only")
        for model in ("gpt-4o-mini", "judge-1"):
            breaker.reset(f"model:{model}")
        sandbox.add_tickets(GROUNDED)
        model_server.script(
            {"match": "ch_1003", "content": plan_for("stripe.refund", REFUND_4850, 4850)}
        )
        judge_server.script({**verdict(0.5), "model": "judge-1"})
        start_worker()
        # When a job is planned and judged
        job_id = submit(4850, 103, "own-endpoint-1")
        # Then the judge's call went to its own endpoint with its own key, and its doubt holds
        assert settled(job_id) == lifecycle.ESCALATED
        judged = judge_server.requests()
        assert [r["model"] for r in judged] == ["judge-1"]
        sent = judged[0]["headers"]["authorization_sha256"]
        assert sent == hashlib.sha256(b"Bearer sk-judge-only").hexdigest()
        planner_texts = json.dumps(model_server.requests())
        assert "You are the opsgate soft check" not in planner_texts
        with session_scope() as s:
            esc = s.scalars(select(Escalation).where(Escalation.job_id == job_id)).one()
            assert (esc.reason, esc.evidence["judged_by"]) == ("low_confidence", "model:judge-1")
        assert sandbox.applied() == []
    finally:
        stop()
