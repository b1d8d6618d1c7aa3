"""Every downstream and model call goes through a recorder, so each one lands in tool_calls
or model_calls (and model calls in the audit chain)."""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.audit import chain as audit
from app.controls import breaker, budget, gates
from app.errors import PermanentError, RetryableError
from app.models import Base, ModelCall
from app.settings import get_settings
from tools.base import Risk
from tools.catalog import SERVICE_IDENTITIES, get_tool

_TOOL_CALLS = Base.metadata.tables["tool_calls"]

T = TypeVar("T")


def _copied(value: T) -> T:
    """A deep copy of a call's answer (JSON data), so no caller can change what another reads.

    A pickle round trip runs in C: a third of what copy.deepcopy cost on these answers.
    """
    try:
        return cast(T, pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)))
    except (pickle.PicklingError, TypeError, AttributeError):
        return copy.deepcopy(value)


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
class RecordedModelCall:
    """One model call (or cache hit), kept in memory until the stage's transaction."""

    tier: str
    model: str
    prompt_version: str
    passages: list[str]
    router: list[str]
    request: dict[str, Any]
    response: dict[str, Any]
    outcome: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    cache_hit: bool = False
    # (reservation, actual cost): the budget settlement made with the record's write.
    settle: tuple[Any, Decimal] | None = None


@dataclass
class CallRecorder:
    """Runs downstream calls outside any transaction and remembers them for the audit."""

    stage: str
    workflow: str = ""
    calls: list[RecordedCall] = field(default_factory=list)
    model_calls: list[RecordedModelCall] = field(default_factory=list)
    # Successful reads by request, for as long as no write intervenes (see `run`).
    _reads: dict[str, Any] = field(default_factory=dict, repr=False)

    def run(
        self,
        tool: str,
        system: str,
        identity: str,
        request: dict[str, Any],
        fn: Callable[[], T],
        *,
        write: bool = False,
        catalog: bool = False,
    ) -> T:
        """Run one call past the gates at the call (app.controls.gates.AT_CALL), recording
        request, answer and outcome; the system's breaker counts the outcome.

        A read this recorder already made with the same request answers from its first answer
        (one stage's work reads a record once, however many of its checks need it); any write
        forgets what was read, so a read after a write goes to the system again.
        """
        memo_key = None if write else audit.canonical_json([tool, request])
        if memo_key is not None and memo_key in self._reads:
            return cast(T, _copied(self._reads[memo_key]))
        if write:
            self._reads.clear()
        gates.run(
            gates.AT_CALL,
            gates.GateCall(
                self.workflow,
                tool,
                request.get("args", request) if catalog else request,
                system=system,
                write=write,
                catalog=catalog,
            ),
        )
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
        if memo_key is not None:
            self._reads[memo_key] = _copied(result)
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

    def read(self, name: str, args: dict[str, Any], fn: Callable[[], T]) -> T:
        """A read that is not a catalog tool (comments, group lists, queries), named
        `<system>.<what>`: run and recorded as the system's service account."""
        system = name.split(".", 1)[0]
        return self.run(name, system, SERVICE_IDENTITIES[system], args, fn)

    def tool(self, name: str, args: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Call a catalog tool with validated arguments."""
        spec = get_tool(name)
        parsed = spec.parse_args(args)
        request = {"args": parsed.model_dump(mode="json"), "idempotency_key": key}
        return self.run(
            name,
            spec.system,
            spec.service_identity,
            request,
            lambda: spec.invoke(parsed, key),
            write=spec.risk is not Risk.READ,
            catalog=True,
        )

    def write(
        self,
        session: Session,
        job_id: str,
        step_pk: int | None = None,
        attempt: int = 1,
        requester: str = "",
        reviewer: str | None = None,
    ) -> None:
        """Add the recorded calls to the session, each with its audit event naming the three
        identities: the human requester (a reference), the agent runtime and the tool's
        service account (the caller commits). A reviewer's live read is recorded as the
        reviewer's: the event's actor, and a fourth identity."""
        calls = list(self.calls)
        self.calls.clear()
        if calls:
            # One Core INSERT ... RETURNING for the batch: the ids go into the audit events,
            # and nothing reads these rows back in this transaction, so the ORM's unit of work
            # (an object, its state and a flush per row) would be pure overhead (issue 20).
            session.flush()  # what the session holds goes first, as a flush here always did
            ids = session.scalars(
                insert(_TOOL_CALLS).returning(_TOOL_CALLS.c.id, sort_by_parameter_order=True),
                [
                    {
                        "job_id": job_id,
                        "step_pk": step_pk,
                        "stage": self.stage,
                        "tool": c.tool,
                        "system": c.system,
                        "service_identity": c.service_identity,
                        "request": c.request,
                        "response": c.response,
                        "outcome": c.outcome,
                        "latency_ms": round(c.latency_ms, 2),
                        "attempt": attempt,
                    }
                    for c in calls
                ],
            ).all()
            agent = f"agent:{get_settings().agent_identity}"
            identities = {"requester": audit.reference(requester), "agent": agent}
            if reviewer is not None:
                identities["reviewer"] = reviewer
            audit.append_many(
                session,
                job_id,
                [
                    (
                        "tool_call",
                        reviewer or agent,
                        {
                            "tool_call_id": row_id,
                            "stage": self.stage,
                            "tool": c.tool,
                            "system": c.system,
                            "identities": dict(identities, service=c.service_identity),
                            "attempt": attempt,
                            "outcome": c.outcome,
                            "latency_ms": round(c.latency_ms, 2),
                            "idempotency_key": c.request.get("idempotency_key"),
                            # The data itself stays in tool_calls (retention, erasure).
                            "request_sha256": audit.sha256_hex(audit.canonical_json(c.request)),
                            "response_sha256": audit.sha256_hex(audit.canonical_json(c.response)),
                        },
                    )
                    for c, row_id in zip(calls, ids, strict=True)
                ],
            )
        self._write_model_calls(session, job_id, attempt)

    def _write_model_calls(self, session: Session, job_id: str, attempt: int) -> None:
        # The audit chain holds references and hashes; the redacted texts stay in
        # model_calls, whose retention can differ from the chain's.
        actor = f"agent:{get_settings().agent_identity}"
        for m in self.model_calls:
            fields = {k: v for k, v in asdict(m).items() if k != "settle"}
            row = ModelCall(job_id=job_id, stage=self.stage, attempt=attempt, **fields)
            if m.settle is not None:
                budget.settle_in(session, *m.settle)
            row.latency_ms = round(m.latency_ms, 2)
            session.add(row)
            session.flush()
            audit.append(
                session,
                job_id,
                "model_call",
                actor,
                {
                    "model_call_id": row.id,
                    "tier": m.tier,
                    "model": m.model,
                    "prompt_version": m.prompt_version,
                    "passages": m.passages,
                    "request_sha256": audit.sha256_hex(audit.canonical_json(m.request)),
                    "response_sha256": audit.sha256_hex(audit.canonical_json(m.response)),
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "cost_usd": str(m.cost_usd),
                    "cache_hit": m.cache_hit,
                    "outcome": m.outcome,
                },
            )
        self.model_calls.clear()
