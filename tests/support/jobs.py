"""Jobs submitted through real intake, and waiting for them to settle."""

from __future__ import annotations

from typing import Any

from tests.support.processes import wait_for


def submit_ticket(
    ticket: int, requester: int | str, delivery: str, submitted_by: str = "test"
) -> str:
    """One support_refund job for a Zendesk ticket, as the Zendesk bridge submits it (a
    number names the Zendesk user; a string is the requester as it is)."""
    from app.intake import submissions

    job_id, _ = submissions.submit(
        {
            "workflow": "support_refund",
            "source": "zendesk",
            "external_id": str(ticket),
            "delivery_id": delivery,
            "requester": requester if isinstance(requester, str) else f"zendesk-user:{requester}",
            "input": {"ticket_id": ticket},
        },
        submitted_by=submitted_by,
    )
    return job_id


def settle(job_id: str, timeout: float = 90) -> str:
    """Wait until the job is done or with a human; returns its status."""
    from app.core.db import session_scope
    from app.jobs import lifecycle
    from app.models import Job

    def status() -> str | None:
        with session_scope() as s:
            job = s.get(Job, job_id)
            assert job is not None
            return job.status if job.status in lifecycle.TERMINAL | {lifecycle.ESCALATED} else None

    return str(wait_for(status, timeout=timeout, what=f"job {job_id} to settle"))


def submit_refund_jobs(cases: list[dict[str, Any]], tag: str, source: str) -> list[str]:
    """One support_refund job per sandbox refund case; returns the job ids."""
    from app.intake import submissions

    return [
        submissions.submit(
            {
                "workflow": "support_refund",
                "source": source,
                "external_id": str(c["ticket_id"]),
                "delivery_id": f"{tag}-{i}",
                "requester": f"zendesk-user:{c['user_id']}",
                "input": {"ticket_id": c["ticket_id"]},
            },
            submitted_by="test",
        )[0]
        for i, c in enumerate(cases)
    ]


OVER_CAP_REFUND = {
    "charge_id": "ch_1003",
    "amount": 9000,
    "currency": "usd",
    "reason": "requested_by_customer",
}


def escalated_refund(
    *,
    workflow: str = "support_refund",
    tool: str = "stripe.refund",
    requester: str = "alice@example.com",
    reason: str = "approval_required",
    args: dict[str, Any] | None = None,
    external_id: str | None = None,
    input: dict[str, Any] | None = None,  # noqa: A002
    evidence: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """A job whose stored plan (by default: support_refund, one stripe.refund over the
    autonomy cap) is escalated with `reason` for step s1, committed without any worker; returns
    the job's and the escalation's ids."""

    from app.core.db import session_scope
    from app.human import escalation
    from app.intake import submissions
    from app.jobs import lifecycle
    from app.jobs.steps import Plan, Step
    from app.models import Job
    from app.stages.plan import store_plan

    n = next(_escalated)
    sub = submissions.parse_submission(
        {
            "workflow": workflow,
            "external_id": external_id or f"ticket-4823-{n}",
            "input": input or {"ticket_id": 4823},
            "requester": requester,
            "delivery_id": f"escalated-{n}",
        }
    )
    plan = Plan(
        workflow=workflow,
        summary="Refund 90.00 USD on charge ch_1003",
        confidence=0.9,
        steps=[Step(tool=tool, args=args or OVER_CAP_REFUND)],
    )
    with session_scope() as session:
        job, created = submissions.accept(session, sub, submitted_by="test")
        assert created
        session.flush()
        loaded = session.get(Job, job.id)
        assert loaded is not None
        store_plan(session, loaded, plan, "rules")
        lifecycle.transition(session, loaded, lifecycle.PLANNED, actor="test")
        esc = escalation.escalate(
            session,
            loaded,
            reason=reason,
            detail="over the autonomy cap",
            evidence=evidence or {"step_id": "s1", "rule": "autonomy_cap"},
            stage="verify_proposal",
            actor="test",
        )
        session.commit()
        return loaded.id, esc.id


def _counter() -> Any:
    import itertools
    import secrets

    prefix = secrets.token_hex(3)
    return (f"{prefix}-{i}" for i in itertools.count())


_escalated = _counter()


def open_escalation_id(job_id: str) -> int:
    """The id of the job's open escalation (exactly one)."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import Escalation

    with session_scope() as s:
        query = select(Escalation.id).where(
            Escalation.job_id == job_id, Escalation.status == "open"
        )
        return int(s.scalars(query).one())


def detached(model: Any, key: Any) -> Any:
    """A row as it is now in the database, detached from its session (for assertions)."""
    from app.core.db import session_scope

    with session_scope() as s:
        found = s.get(model, key)
        assert found is not None, f"no {model.__name__} {key}"
        s.expunge(found)
        return found
