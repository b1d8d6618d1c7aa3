"""Jobs submitted through real intake, and waiting for them to settle."""

from __future__ import annotations

from typing import Any

from tests.support.processes import wait_for


def submit_ticket(ticket: int, requester: int, delivery: str, submitted_by: str = "test") -> str:
    """One support_refund job for a Zendesk ticket, as the Zendesk bridge submits it."""
    from app.intake import submissions

    job_id, _ = submissions.submit(
        {
            "workflow": "support_refund",
            "source": "zendesk",
            "external_id": str(ticket),
            "delivery_id": delivery,
            "requester": f"zendesk-user:{requester}",
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
