"""What end-to-end tests do to a running API: read a job, wait for it to settle, decide its
escalation, inject sandbox faults. Workflow tests subclass it with their own submissions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from app.jobs import lifecycle
from tests.support.processes import wait_for
from tests.support.sandbox import Sandbox

SETTLED = lifecycle.TERMINAL | {lifecycle.ESCALATED}


@dataclass
class ApiFleet:
    """The running system as the tests drive it: the API's URL and the sandbox."""

    api: str
    sandbox: Sandbox
    # The reviewer key's Authorization header the subclass reads and decides with.
    reviewer: ClassVar[dict[str, str]] = {}

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}: status, steps, events, latest escalation with its evidence."""
        resp = httpx.get(f"{self.api}/v1/jobs/{job_id}", headers=self.reviewer)
        resp.raise_for_status()
        return dict(resp.json())

    def settle(self, job_id: str) -> dict[str, Any]:
        """Wait until the job is done or with a human; returns its detail."""

        def settled() -> dict[str, Any] | None:
            detail = self.job(job_id)
            return detail if detail["status"] in SETTLED else None

        found: dict[str, Any] = wait_for(settled, timeout=90, what=f"job {job_id} to settle")
        return found

    def escalated(self, job_id: str, reason: str) -> dict[str, Any]:
        """Wait for the job to reach the human queue with `reason`; returns the escalation."""
        detail = self.settle(job_id)
        assert detail["status"] == lifecycle.ESCALATED, detail
        escalation: dict[str, Any] = detail["escalation"]
        assert escalation["reason"] == reason, escalation
        assert escalation["status"] == "open"
        return escalation

    def decide(
        self,
        escalation: dict[str, Any],
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST a decision on the escalation (as the reviewer unless `headers` say otherwise)."""
        return httpx.post(
            f"{self.api}/v1/escalations/{escalation['id']}/decision",
            json=body,
            headers=self.reviewer if headers is None else headers,
        )

    def faults(self, **spec: Any) -> None:
        """Set sandbox faults for one system (see tools/sandbox/faults.py)."""
        resp = httpx.post(f"{self.sandbox.url}/_sandbox/faults", json=spec, timeout=10)
        resp.raise_for_status()


def start_console(monkeypatch: Any, keys: str, start_worker: Any, start_api: Any) -> str:
    """A worker and the API (with the console) under these API keys; returns the API's URL."""
    from tests.support.env import reset_process_state

    monkeypatch.setenv("OPSGATE_API_KEYS", keys)
    reset_process_state()
    start_worker()
    return str(start_api())
