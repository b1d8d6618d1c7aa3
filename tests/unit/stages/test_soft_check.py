"""app/stages/soft_check.py: the soft check's verdict from the deterministic scorer (no judge
configured), the request text it weighs, and the history of the job's subject on SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.controls.calls import CallRecorder
from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Escalation, Job, PlanStep, StepStatus
from app.stages.soft_check import history_of, judge_plan, request_text
from app.workflows import registry
from verifiers.soft import SoftEvidence

TICKET = {
    "id": 4821,
    "subject": "Refund for duplicate charge",
    "description": "Please refund $25.00 for charge ch_1001. Thanks, Alice",
}
REFUND = {"charge_id": "ch_1001", "amount": 2500, "currency": "usd", "reason": "duplicate"}


def evidence(amount: int = 2500, text: str | None = None) -> SoftEvidence:
    workflow = registry.get("support_refund")
    return SoftEvidence(
        workflow="support_refund",
        job_input={"ticket_id": 4821},
        requester="zendesk-user:101",
        request_text=text or f"{TICKET['subject']}\n{TICKET['description']}",
        context={"ticket": TICKET},
        summary="Refund $25.00 on ch_1001",
        steps=[
            {
                "tool": "stripe.refund",
                "args": dict(REFUND, amount=amount),
                "rationale": "The requester asks for a refund of $25.00 on ch_1001.",
                "evidence": ["ticket:4821", "policy:refunds#eligibility"],
            }
        ],
        facts={
            "charge": {"id": "ch_1001", "receipt_email": "alice@example.com"},
            "requester": {"id": 101, "email": "alice@example.com"},
        },
        policy_doc=workflow.policy_doc,
        signals=workflow.signals,
    )


@pytest.fixture
def no_judge(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return CallRecorder(stage="verify_proposal", workflow="support_refund")


def test_a_grounded_plan_passes_judged_by_the_scorer(no_judge: CallRecorder) -> None:
    verdict = judge_plan(evidence(), "rules", no_judge)
    assert verdict.ok and verdict.rule == "soft_check"
    assert verdict.evidence["judged_by"] == "scorer"
    assert verdict.confidence == verdict.evidence["scorer_confidence"] == 1.0
    assert verdict.evidence["vetoed_by"] == []
    assert no_judge.model_calls == []  # no judge was asked


def test_a_critical_signal_vetoes_whatever_the_confidence(no_judge: CallRecorder) -> None:
    verdict = judge_plan(evidence(amount=9000), "rules", no_judge)
    assert not verdict.ok
    assert verdict.evidence["vetoed_by"] == ["amount_stated"]
    assert verdict.detail.startswith("critical signal amount_stated does not hold")


def test_the_request_text_is_the_tickets_words_or_the_input() -> None:
    assert request_text("support_refund", {"ticket_id": 4821}, {"ticket": TICKET}) == (
        "Refund for duplicate charge\nPlease refund $25.00 for charge ch_1001. Thanks, Alice"
    )
    job_input = {"target_login": "bob@example.com", "request_type": "password_reset"}
    assert request_text("it_request", job_input, {}) == (
        '{"request_type": "password_reset", "target_login": "bob@example.com"}'
    )


def _store(job_id: str, tool: str, args: dict[str, Any], status: str) -> None:
    with session_scope() as s:
        s.add(
            PlanStep(
                job_id=job_id,
                step_id="s1",
                revision=1,
                position=0,
                tool=tool,
                args=args,
                args_hash="0" * 64,
                status=status,
                idempotency_key=f"{job_id}:s1",
            )
        )
        s.commit()


def test_the_history_names_earlier_writes_and_rejections_of_the_same_subject(
    sqlite_db: Path, new_job: Callable[..., str]
) -> None:
    earlier, rejected, now = new_job(4821), new_job(4821), new_job(4821)
    other_ticket = new_job(4822)
    with session_scope() as s:
        # The subject is the job's external id: the ticket, as the Zendesk bridge names it.
        for job_id in (earlier, rejected, now):
            found = s.get(Job, job_id)
            assert found is not None
            found.external_id = "4821"
        s.commit()
    _store(earlier, "stripe.refund", REFUND, StepStatus.SUCCEEDED)
    _store(other_ticket, "stripe.refund", REFUND, StepStatus.SUCCEEDED)
    _store(now, "stripe.refund", REFUND, StepStatus.PENDING)
    with session_scope() as s:
        s.add(
            Escalation(
                job_id=rejected,
                reason="approval_required",
                detail="over the cap",
                evidence={},
                stage="verify_proposal",
                decision="reject",
                note="customer withdrew",
                status="closed",
            )
        )
        s.commit()
        job = s.get(Job, now)
        assert job is not None and job.status == lifecycle.QUEUED
        events = history_of(s, job)
    assert [(e.kind, e.conflicting) for e in events] == [
        ("earlier_job", True),
        ("rejected", True),
    ]
    assert f"job {earlier} already ran stripe.refund for" in events[0].detail
    assert events[1].detail.endswith("customer withdrew")
    assert all(other_ticket not in e.detail for e in events)
