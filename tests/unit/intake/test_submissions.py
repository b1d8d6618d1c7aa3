"""app/intake/submissions.py: submission validation, and exactly one job per delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.audit import chain
from app.core.db import session_scope
from app.errors import InputError
from app.intake import submissions
from app.models import AuditEvent, Job


def body(**overrides: Any) -> dict[str, Any]:
    """A valid generic intake body, with fields replaced or (value None) removed."""
    raw: dict[str, Any] = {
        "workflow": "support_refund",
        "external_id": "ticket-4821",
        "input": {"ticket_id": 4821},
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def test_valid_submission_parses() -> None:
    sub = submissions.parse_submission(body(requester="alice@example.com", delivery_id="d-1"))

    assert (sub.workflow, sub.external_id, sub.source) == ("support_refund", "ticket-4821", "api")
    assert sub.input == {"ticket_id": 4821}
    assert submissions.intake_key(sub) == "api:d-1"


def test_intake_key_falls_back_to_external_id() -> None:
    assert submissions.intake_key(submissions.parse_submission(body())) == "api:ticket-4821"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (body(workflow="wire_transfer"), ["unknown workflow", "wire_transfer", "support_refund"]),
        (body(input={"ticket_id": "abc"}), ["invalid input for support_refund", "ticket_id"]),
        (
            body(input={"ticket_id": 0}),
            ["invalid input for support_refund", "ticket_id", "greater than 0"],
        ),
        (body(input={"ticket_id": -4}), ["ticket_id", "greater than 0"]),
        (body(input={}), ["invalid input for support_refund", "ticket_id", "required"]),
        (
            body(input={"ticket_id": 4821, "amount": 100}),
            ["invalid input", "amount", "Extra inputs"],
        ),
        (body(priority="high"), ["not a job submission", "priority", "Extra inputs"]),
        (body(external_id=None), ["not a job submission", "external_id", "required"]),
        (body(external_id=""), ["external_id"]),
        (body(input=None), ["not a job submission", "input"]),
        (body(source="Not A Source!"), ["source"]),
        (["not", "an", "object"], ["not a job submission"]),
    ],
)
def test_bad_submissions_are_input_errors_naming_the_problem(raw: Any, named: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        submissions.parse_submission(raw)
    for part in named:
        assert part in str(caught.value)


def _accept(raw: dict[str, Any]) -> tuple[str, bool]:
    with session_scope() as session:
        job, created = submissions.accept(
            session, submissions.parse_submission(raw), submitted_by="test"
        )
        session.commit()
        return job.id, created


def _count(model: Any) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_repeated_delivery_returns_the_same_job(sqlite_db: Path) -> None:
    # Given a delivery that was accepted
    first_id, first_created = _accept(body(source="zendesk", delivery_id="evt-1"))

    # When the same source delivers the same event again (even with other content)
    second_id, second_created = _accept(
        body(source="zendesk", delivery_id="evt-1", external_id="ticket-9999")
    )

    # Then it is the original job, and nothing new was created
    assert first_created is True and second_created is False
    assert second_id == first_id
    assert _count(Job) == 1
    assert _count(AuditEvent) == 1


def test_new_delivery_id_makes_a_new_job(sqlite_db: Path) -> None:
    first_id, _ = _accept(body(source="zendesk", delivery_id="evt-1"))
    second_id, created = _accept(body(source="zendesk", delivery_id="evt-2"))

    assert created is True and second_id != first_id
    assert _count(Job) == 2


def test_same_delivery_id_from_another_source_is_another_job(sqlite_db: Path) -> None:
    first_id, _ = _accept(body(source="zendesk", delivery_id="evt-1"))
    second_id, created = _accept(body(source="api", delivery_id="evt-1"))

    assert created is True and second_id != first_id


def test_accepted_job_is_queued_with_a_plan_message(sqlite_db: Path) -> None:
    job_id, _ = _accept(body(delivery_id="d-7"))

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.workflow, job.input) == (
            "queued",
            "support_refund",
            {"ticket_id": 4821},
        )
        # Its plan message is due on the job row until a worker takes it
        assert job.message_due_at is not None


def test_intake_audit_event_holds_a_requester_hash_not_the_requester(sqlite_db: Path) -> None:
    requester = "alice.adams@example.com"
    job_id, _ = _accept(body(requester=requester, delivery_id="d-pii"))

    with session_scope() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.job_id == job_id)).all()
    assert [e.kind for e in events] == ["intake"]
    payload = events[0].payload
    assert requester not in chain.canonical_json(payload)
    assert "alice" not in chain.canonical_json(payload).lower()
    assert payload["requester_ref"] == chain.sha256_hex(requester)[:16]
    assert payload["input_hash"] == chain.sha256_hex(chain.canonical_json({"ticket_id": 4821}))
    assert events[0].actor == "test"


def test_stored_input_is_the_validated_input(sqlite_db: Path) -> None:
    # Given a submission whose ticket id arrives as a string (webhook placeholders do this)
    job_id, _ = _accept(body(input={"ticket_id": "4821"}, delivery_id="d-str"))

    # Then the job carries the validated integer, which later stages compare with ==
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.input == {"ticket_id": 4821}
