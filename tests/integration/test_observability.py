"""Observability with real processes: a uvicorn API, Celery workers, PostgreSQL, Redis and the
sandbox; Sentry envelopes and OTLP traces received by a local HTTP endpoint, as a Sentry
server or an OpenTelemetry collector would receive them."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.core.db import session_scope
from app.jobs import lifecycle
from app.models import Escalation, Job, ModelCall, ToolCall
from tests.support.env import reset_process_state
from tests.support.processes import Proc, wait_for
from tests.support.redis_server import RedisServer
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.integration

KEY = "desk-key-for-observability"
STAGE_TASKS = [
    "opsgate.plan",
    "opsgate.verify_proposal",
    "opsgate.execute",
    "opsgate.verify_outcome",
]


class Receiver:
    """A local HTTP endpoint keeping every POST body (decompressed) by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sentry_items(self) -> list[dict[str, Any]]:
        """Every item of every Sentry envelope received (events and transactions)."""
        items = []
        for path, body in list(self.posts):
            if path.endswith("/envelope/"):
                items += parse_envelope(body)
        return items

    def spans(self) -> list[dict[str, Any]]:
        """Every span of every OTLP/HTTP export received, with its service name."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        found = []
        for path, body in list(self.posts):
            if path != "/v1/traces":
                continue
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                for scope in rs.scope_spans:
                    for span in scope.spans:
                        found.append(
                            {
                                "service": attrs.get("service.name"),
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "kind": span.kind,
                            }
                        )
        return found

    def close(self) -> None:
        self.server.shutdown()


def parse_envelope(raw: bytes) -> list[dict[str, Any]]:
    """The items of a Sentry envelope: a header line, then per item a header and a payload
    (of `length` bytes when the header says, else up to the next newline)."""
    _, _, rest = raw.partition(b"\n")
    items = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        if header.get("type") in ("event", "transaction"):
            items.append({"type": header["type"], **json.loads(payload)})
    return items


@pytest.fixture
def receiver() -> Any:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def api_env(
    pg_env: dict[str, str], own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """PostgreSQL, a jobs API key, and a Redis of the test's own: queue-wait figures and
    traces must come from this test's workers only (other test sessions on the machine share
    the standard Redis)."""
    extra = {"OPSGATE_API_KEYS": f"desk:requester:{KEY}", "OPSGATE_REDIS_URL": own_redis.url}
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    reset_process_state()
    return {**pg_env, **extra}


def submit(api: str, ticket: int, requester: str) -> str:
    resp = httpx.post(
        f"{api}/v1/jobs",
        headers={"Authorization": f"Bearer {KEY}"},
        json={
            "workflow": "support_refund",
            "external_id": f"T-{ticket}",
            "requester": requester,
            "input": {"ticket_id": ticket},
        },
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["job_id"])


def status_of(job_id: str) -> str | None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        return job.status if job else None


def settle(job_id: str, timeout: float = 60) -> str:
    done = lifecycle.TERMINAL | {lifecycle.ESCALATED}
    return str(wait_for(lambda: (st := status_of(job_id)) in done and st, timeout=timeout))


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    out = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_one_trace_from_the_api_through_every_task_in_otlp_and_in_the_logs(
    api_env: dict[str, str], receiver: Any, sandbox: Sandbox, start_api: Any, start_worker: Any
) -> None:
    # Given an API and a prefork worker exporting traces to a local OTLP endpoint
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    api = start_api(env)
    worker = start_worker("--pool", "prefork", "--concurrency", "2", env=env)
    # When a job is submitted through the jobs API and runs to the end
    job_id = submit(api, 4821, "zendesk-user:101")
    assert settle(job_id) == lifecycle.COMPLETED

    # Then the API's server span and every stage task's span are in one trace
    def one_trace() -> Any:
        spans = receiver.spans()
        server = [s for s in spans if s["service"] == "opsgate-api" and s["kind"] == 2]
        if not server:
            return None
        trace = server[0]["trace_id"]
        names = {s["name"] for s in spans if s["trace_id"] == trace}
        runs = {n.removeprefix("run/") for n in names if n.startswith("run/")}
        return trace if set(STAGE_TASKS) <= runs else None

    trace_id = wait_for(one_trace, timeout=30, what="the API's and the tasks' spans in one trace")
    workers = {s["service"] for s in receiver.spans() if s["trace_id"] == trace_id}
    assert workers == {"opsgate-api", "opsgate-worker"}
    # And the worker's log lines of that job carry the job, task and stage, and the trace
    mine = [line for line in json_lines(worker) if line.get("job_id") == job_id]
    stages = {line["stage"] for line in mine}
    assert set(STAGE_TASKS) <= {f"opsgate.{stage}" for stage in stages}
    assert all(line.get("task_id") and line.get("trace_id") == trace_id for line in mine)
    # Celery's own lines ("Task ... succeeded") are in the same context
    assert any("succeeded" in line["event"] for line in mine)


def test_sentry_gets_one_trace_per_job_and_redacted_task_errors_tagged_with_the_job(
    api_env: dict[str, str], receiver: Any, sandbox: Sandbox, start_api: Any, start_worker: Any
) -> None:
    # Given an API and a threads worker with Sentry pointed at a local endpoint
    env = {
        "SENTRY_DSN": f"http://public@{receiver.url.removeprefix('http://')}/1",
        "OPSGATE_SENTRY_TRACES_SAMPLE_RATE": "1.0",
    }
    api = start_api(env)
    worker = start_worker(env=env)
    # When a job goes through the jobs API and its chain of tasks
    job_id = submit(api, 4821, "zendesk-user:101")
    assert settle(job_id) == lifecycle.COMPLETED

    # Then the API's transaction and every stage task's transaction share one trace id
    def one_trace() -> Any:
        txs = [i for i in receiver.sentry_items() if i["type"] == "transaction"]
        api_txs = [t for t in txs if t["transaction"] == "/v1/jobs"]
        if not api_txs:
            return None
        trace = api_txs[0]["contexts"]["trace"]["trace_id"]
        names = {t["transaction"] for t in txs if t["contexts"]["trace"]["trace_id"] == trace}
        return trace if set(STAGE_TASKS) <= names else None

    trace_id = wait_for(one_trace, timeout=30, what="API and task transactions in one trace")
    tasks = [
        t
        for t in receiver.sentry_items()
        if t["type"] == "transaction" and t["transaction"] in STAGE_TASKS
    ]
    assert {
        t["tags"]["job_id"] for t in tasks if t["contexts"]["trace"]["trace_id"] == trace_id
    } == {job_id}

    # When a task crashes on a job carrying personal data (a corrupt row: no target login)
    from app.jobs import outbox
    from app.models import new_id, utcnow

    with session_scope() as s:
        bad = Job(
            id=new_id(),
            source="api",
            external_id="INC-9",
            intake_key="api:obs-crash",
            workflow="it_request",
            requester="gina.ortiz@example.com",
            submitted_by="test",
            input={"request_type": "password_reset", "note": "call +44 20 7946 0958"},
            status=lifecycle.QUEUED,
            message_due_at=utcnow(),
        )
        s.add(bad)
        s.commit()
        bad_id = bad.id
    outbox.publish_for_job(bad_id)

    # Then Sentry gets the error, tagged with the job id, with no e-mail address or phone in it
    def error() -> Any:
        events = [i for i in receiver.sentry_items() if i["type"] == "event"]
        return next((e for e in events if e.get("tags", {}).get("job_id") == bad_id), None)

    event = wait_for(error, timeout=30, what="the task's error event")
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    assert event["tags"]["stage"] == "plan"
    text = json.dumps(event)
    assert "gina.ortiz@example.com" not in text and "7946" not in text
    assert "[email]" in text  # it was there (a frame's locals), and was redacted
    # And the worker's log has the crash, with the job id and without the address (the log
    # line may reach the file after Sentry got the event: wait for it)
    crash = wait_for(
        lambda: [line for line in json_lines(worker) if line.get("job_id") == bad_id] or None,
        timeout=30,
        what="the crash in the worker's log",
    )
    assert crash and "gina.ortiz" not in json.dumps(crash)


def add_model_calls(job_id: str) -> None:
    rows = [
        ("small", "gpt-4o-mini", "invalid", False, 900, 200),
        ("small", "gpt-4o-mini", "ok", False, 1000, 250),
        ("small", "gpt-4o-mini", "ok", True, 1000, 250),
        ("small", "gpt-4o-mini", "refused", False, 800, 20),
        ("large", "gpt-4o", "ok", False, 1200, 300),
    ]
    with session_scope() as s:
        for tier, model, outcome, hit, tin, tout in rows:
            s.add(
                ModelCall(
                    job_id=job_id,
                    stage="plan",
                    tier=tier,
                    model=model,
                    prompt_version="planner@test",
                    passages=[],
                    router=[],
                    request={},
                    response={},
                    outcome=outcome,
                    input_tokens=tin,
                    output_tokens=tout,
                    cost_usd=Decimal("0.001") * (0 if hit else 1),
                    latency_ms=120.0,
                    cache_hit=hit,
                )
            )
        s.commit()


def test_metrics_from_a_real_api_equal_the_database_after_two_worker_processes(
    api_env: dict[str, str], sandbox: Sandbox, start_api: Any, start_worker: Any
) -> None:
    # Given two worker processes and a Stripe that fails a few calls (retries)
    httpx.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"system": "stripe", "error_rate": 1.0, "count": 2},
        timeout=10,
    ).raise_for_status()
    start_worker("--concurrency", "2")
    start_worker("--concurrency", "2")
    api = start_api()
    # When refund jobs run through the fleet
    cases = sandbox.refund_cases(6)
    ids = [submit(api, c["ticket_id"], f"zendesk-user:{c['user_id']}") for c in cases]
    for job_id in ids:
        settle(job_id, timeout=90)
    # And model calls recorded for one of them (as the planner's recorder writes them)
    add_model_calls(ids[0])
    # Then /metrics (scraped from the API process) says what the database holds
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{api}/metrics").text)}

    def samples(family: str, suffix: str = "") -> dict[tuple[Any, ...], float]:
        return {
            tuple(sorted(s.labels.items())): s.value
            for s in families[family].samples
            if s.name == family + suffix
        }

    with session_scope() as s:
        by_status = dict(
            ((wf, st), n)
            for wf, st, n in s.execute(
                select(Job.workflow, Job.status, func.count()).group_by(Job.workflow, Job.status)
            )
        )
        retries = dict(
            s.execute(select(Job.workflow, func.sum(Job.retries)).group_by(Job.workflow)).all()
        )
        calls = dict(
            ((t, o), n)
            for t, o, n in s.execute(
                select(ToolCall.tool, ToolCall.outcome, func.count()).group_by(
                    ToolCall.tool, ToolCall.outcome
                )
            )
        )
        latencies = dict(
            s.execute(
                select(ToolCall.tool, func.count())
                .where(ToolCall.latency_ms <= 250)
                .group_by(ToolCall.tool)
            ).all()
        )
        retried = dict(
            s.execute(
                select(ToolCall.tool, func.count())
                .where(ToolCall.attempt > 1)
                .group_by(ToolCall.tool)
            ).all()
        )
        escalations = s.scalar(select(func.count()).select_from(Escalation)) or 0
        models = s.scalar(select(func.count()).select_from(ModelCall)) or 0
        tokens = s.execute(
            select(
                ModelCall.model, func.sum(ModelCall.input_tokens), func.sum(ModelCall.output_tokens)
            )
            .where(ModelCall.cache_hit.is_(False))
            .group_by(ModelCall.model)
        ).all()
    assert by_status[("support_refund", "completed")] == len(ids)
    assert samples("opsgate_jobs") == {
        (("status", st), ("workflow", wf)): float(n) for (wf, st), n in by_status.items()
    }
    assert samples("opsgate_job_retries", "_total") == {
        (("workflow", wf),): float(n) for wf, n in retries.items()
    }
    assert sum(retries.values()) >= 1 and retried
    assert samples("opsgate_tool_calls") == {
        (("outcome", o), ("tool", t)): float(n) for (t, o), n in calls.items()
    }
    assert samples("opsgate_tool_calls_retried", "_total") == {
        (("tool", t),): float(n) for t, n in retried.items()
    }
    latency = samples("opsgate_tool_call_latency_seconds", "_bucket")
    for tool, n in latencies.items():
        assert latency[(("le", "0.25"), ("tool", tool))] == n
    for (tool, _), _n in calls.items():
        total = sum(v for (t, _o), v in calls.items() if t == tool)
        assert latency[(("le", "+Inf"), ("tool", tool))] == total
    assert sum(samples("opsgate_escalations").values()) == escalations
    assert sum(samples("opsgate_model_calls").values()) == models == 5
    assert samples("opsgate_model_tokens", "_total") == {
        (("direction", d), ("model", m)): float(n)
        for m, tin, tout in tokens
        for d, n in (("input", tin), ("output", tout))
    }
    assert samples("opsgate_model_cost_usd") == {(("workflow", "support_refund"),): 0.004}
    # Schema adherence: valid answers among the model's answers (cache hits and refusals aside)
    assert samples("opsgate_model_schema_adherence_ratio") == {
        (("model", "gpt-4o-mini"), ("tier", "small")): 0.5,
        (("model", "gpt-4o"), ("tier", "large")): 1.0,
    }
    # And every stage message's wait in its queue was counted, by whichever worker took it
    waits = samples("opsgate_queue_wait_seconds", "_count")
    deliveries = 4 * len(ids) + 2 * len(ids)  # plan, verify, 2 x (execute, verify outcome)
    assert sum(waits.values()) >= deliveries
    assert set(dict(k)["queue"] for k in waits) >= {"plan", "verify", "execute"}


def test_metrics_on_the_embedded_defaults_without_redis(sqlite_db: Any) -> None:
    # Given the embedded SQLite database and no Redis running
    from prometheus_client import CollectorRegistry, generate_latest

    from app.telemetry.metrics import FleetCollector

    registry = CollectorRegistry()
    registry.register(FleetCollector())
    # When scraped, Then the database figures are there and the queue waits are left out
    text = generate_latest(registry).decode()
    assert "opsgate_outbox_pending 0.0" in text
    assert "opsgate_outbox_oldest_pending_seconds 0.0" in text
    assert "opsgate_queue_wait_seconds" not in text
