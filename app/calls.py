"""Every downstream call goes through a recorder, so each one lands in tool_calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app import breaker, policy, ratelimit
from app.errors import PermanentError, RetryableError
from app.models import ToolCall
from tools.base import Risk
from tools.catalog import get_tool

T = TypeVar("T")


@dataclass
class RecordedCall:
    """One call, kept in memory until the stage's transaction writes it."""

    tool: str
    system: str
    service_identity: str
    request: dict[str, Any]
    response: dict[str, Any] | None
    outcome: str
    latency_ms: float


@dataclass
class CallRecorder:
    """Runs downstream calls outside any transaction and remembers them for the audit."""

    stage: str
    calls: list[RecordedCall] = field(default_factory=list)

    def run(
        self,
        tool: str,
        system: str,
        identity: str,
        request: dict[str, Any],
        fn: Callable[[], T],
        *,
        write: bool = False,
    ) -> T:
        """Run one call through the system's breaker, recording request, answer and outcome."""
        breaker.before_call(system, write=write)
        started = time.perf_counter()
        try:
            result = fn()
        except RetryableError as exc:
            # Timeouts, 429 and 5xx count against the system; a 4xx answer does not.
            breaker.record(system, ok=False)
            self._failed(tool, system, identity, request, exc, started)
            raise
        except Exception as exc:
            if isinstance(exc, PermanentError):
                breaker.record(system, ok=True)
            self._failed(tool, system, identity, request, exc, started)
            raise
        breaker.record(system, ok=True)
        shown = result if isinstance(result, dict) else {"items": result}
        elapsed = (time.perf_counter() - started) * 1000
        self.calls.append(RecordedCall(tool, system, identity, request, shown, "ok", elapsed))
        return result

    def _failed(
        self,
        tool: str,
        system: str,
        identity: str,
        request: dict[str, Any],
        exc: Exception,
        started: float,
    ) -> None:
        self.calls.append(
            RecordedCall(
                tool,
                system,
                identity,
                request,
                {"error": f"{exc.__class__.__name__}: {exc}"},
                "error",
                (time.perf_counter() - started) * 1000,
            )
        )

    def tool(self, name: str, args: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Call a catalog tool with validated arguments."""
        spec = get_tool(name)
        parsed = spec.parse_args(args)
        ratelimit.acquire(name, policy.rate_limit(name), write=spec.risk is not Risk.READ)
        request = {"args": parsed.model_dump(mode="json"), "idempotency_key": key}
        return self.run(
            name,
            spec.system,
            spec.service_identity,
            request,
            lambda: spec.invoke(parsed, key),
            write=spec.risk is not Risk.READ,
        )

    def write(
        self, session: Session, job_id: str, step_pk: int | None = None, attempt: int = 1
    ) -> None:
        """Add the recorded calls to the session (the caller commits)."""
        for c in self.calls:
            session.add(
                ToolCall(
                    job_id=job_id,
                    step_pk=step_pk,
                    stage=self.stage,
                    tool=c.tool,
                    system=c.system,
                    service_identity=c.service_identity,
                    request=c.request,
                    response=c.response,
                    outcome=c.outcome,
                    latency_ms=round(c.latency_ms, 2),
                    attempt=attempt,
                )
            )
        self.calls.clear()
