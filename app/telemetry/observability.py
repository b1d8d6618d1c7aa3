"""Telemetry in one place: Sentry, OpenTelemetry, and the ids every log line carries.

Nothing here runs at import. The API calls `init_process("api")` when it builds its app; the
Celery signals connected by `connect_celery()` do the same once per process that runs tasks:
in `worker_init` for the threads and solo pools, in each prefork child after the fork
(`worker_process_init`: exporter threads and HTTP connections do not survive a fork), and in
beat. Tasks never mention telemetry: their ids are bound to the log context around each task
(`task_prerun` / `task_postrun`), and requests' in one ASGI middleware.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, get_contextvars

from app.core.redaction import redact
from app.jobs.celery_config import PUBLISHED_HEADER
from app.jobs.lifecycle import STAGES
from app.settings import get_settings
from app.telemetry import dbwork, metrics

# What this process turned on (OpenTelemetry by pid: its exporter thread is per process).
_state: dict[str, Any] = {"sentry": False, "otel_pid": None, "provider": None}
# The running task's queue wait, from task_prerun to task_postrun (each pool thread its own).
_task_local = threading.local()
# The log context copied into Sentry events as tags (searchable in Sentry).
_TAGGED = ("job_id", "stage", "task_id", "request_id")
# Strings in Sentry events left as they are: ids and timestamps, never personal data.
_KEEP = frozenset(
    {"event_id", "trace_id", "span_id", "parent_span_id", "timestamp", "release", "server_name"}
)
# user:password in a URL (a database URL in a repr of the settings, in a frame's locals).
_CREDENTIALS = re.compile(r"(\w+://)[^\s/@:'\"]*:[^\s/@'\"]+@")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# --- process start-up -------------------------------------------------------------------


def init_process(component: str) -> None:
    """Turn on what the settings configure (Sentry, OTLP traces) for this process."""
    init_sentry(component)
    init_tracing(component)


def init_sentry(component: str) -> bool:
    """Initialise the Sentry SDK when SENTRY_DSN is set; True if it is on."""
    settings = get_settings()
    if settings.sentry_dsn is None:
        return False
    if _state["sentry"]:
        return True
    import sentry_sdk
    from sentry_sdk.integrations import Integration
    from sentry_sdk.integrations.celery import CeleryIntegration

    integrations: list[Integration] = [
        CeleryIntegration(propagate_traces=True, monitor_beat_tasks=False)
    ]
    if component == "api":
        from sentry_sdk.integrations.fastapi import FastApiIntegration
        from sentry_sdk.integrations.starlette import StarletteIntegration

        integrations += [StarletteIntegration(), FastApiIntegration()]
    else:
        # Sentry's auto-enabled integrations import every supported library that is installed
        # (fastapi, starlette, openai, ...): a worker or beat would carry the API stack for
        # nothing. They get the integrations of what they use, named here.
        from sentry_sdk.integrations.httpx import HttpxIntegration
        from sentry_sdk.integrations.redis import RedisIntegration
        from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration

        integrations += [HttpxIntegration(), RedisIntegration(), SqlalchemyIntegration()]
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or settings.environment,
        release=settings.sentry_release or f"opsgate@{_version()}",
        traces_sample_rate=settings.sentry_traces_sample_rate,
        send_default_pii=False,
        # Trace headers go to Celery messages (CeleryIntegration), not to Stripe or Zendesk.
        trace_propagation_targets=[],
        integrations=integrations,
        auto_enabling_integrations=component == "api",
        before_send=_scrub,
        before_send_transaction=_scrub,
    )
    sentry_sdk.set_tag("component", component)
    _state["sentry"] = True
    return True


def init_tracing(component: str) -> bool:
    """Export OpenTelemetry traces over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    settings = get_settings()
    if settings.otel_endpoint is None:
        return False
    if _state["otel_pid"] == os.getpid():
        return True
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": f"opsgate-{component}",
            "service.namespace": "opsgate",
            "service.version": _version(),
            "deployment.environment": settings.environment,
        }
    )
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); parent-based always-on by default.
    provider = TracerProvider(resource=resource)
    endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    # Producer spans and `traceparent` headers on publish (the API and every stage publish),
    # consumer spans around each task.
    CeleryInstrumentor().instrument(tracer_provider=provider)
    _state.update(otel_pid=os.getpid(), provider=provider)
    return True


def instrument_api(app: Any) -> None:
    """Server spans for the FastAPI app (no-op unless tracing is on in this process)."""
    if _state["otel_pid"] != os.getpid():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_state["provider"], excluded_urls="healthz,metrics"
    )


def flush(timeout: float = 5.0) -> None:
    """Send what is buffered (before a prefork child or the process exits)."""
    if _state["otel_pid"] == os.getpid():
        _state["provider"].force_flush(int(timeout * 1000))
    if _state["sentry"]:
        import sentry_sdk

        sentry_sdk.flush(timeout)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("opsgate")
    except PackageNotFoundError:
        return "0.0.0"


# --- Sentry: redaction and tags -----------------------------------------------------------


def _scrub(event: Any, _hint: Any) -> Any:
    """before_send: every string redacted (messages, stack locals, span descriptions), and
    the job, stage, task and request ids of the log context as tags."""
    clean = redact_tree(event, _KEEP)
    context = get_contextvars()
    tags = clean.get("tags")
    if not isinstance(tags, dict):
        tags = clean["tags"] = {}
    for key in _TAGGED:
        if context.get(key) is not None:
            tags.setdefault(key, redact(str(context[key])))
    return clean


def redact_tree(value: Any, keep: frozenset[str] = frozenset(), key: str = "") -> Any:
    """`value` with every string inside it (dicts, lists) redacted, but those under `keep`;
    dict keys too (a frame's locals can hold a dict keyed by an e-mail address)."""
    if isinstance(value, str):
        return value if key in keep else _CREDENTIALS.sub(r"\1[credentials]@", redact(value))
    if isinstance(value, dict):
        return {
            (k if k in keep or not isinstance(k, str) else redact(k)): redact_tree(v, keep, str(k))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_tree(v, keep) for v in value]
    return value


def _tag_sentry(context: dict[str, Any]) -> None:
    """Tag the current Sentry scope (a task's or a request's own isolation scope), so the
    transaction, which ends after the log context is cleared, carries the ids too."""
    if _state["sentry"]:
        import sentry_sdk

        for key in _TAGGED:
            if context.get(key) is not None:
                sentry_sdk.set_tag(key, str(context[key]))


# --- log processors -----------------------------------------------------------------------


def trace_ids() -> dict[str, str]:
    """The active trace and span ids: OpenTelemetry's when it is on, else Sentry's."""
    if _state["otel_pid"] == os.getpid():
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
    if _state["sentry"]:
        import sentry_sdk

        span = sentry_sdk.get_current_span()
        if span is not None:
            return {"trace_id": span.trace_id, "span_id": span.span_id}
    return {}


def add_trace_ids(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the trace and span ids of the span the line is logged in."""
    if _state["sentry"] or _state["otel_pid"] is not None:
        for key, value in trace_ids().items():
            event.setdefault(key, value)
    return event


_LOG_KEEP = frozenset({"timestamp", "trace_id", "span_id", "task_id", "job_id", "request_id"})


def redact_log(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every string of a log line redacted, nested ones included."""
    return {k: v if k.startswith("_") else redact_tree(v, _LOG_KEEP, k) for k, v in event.items()}


def errors_to_sentry(
    _logger: Any, name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: error lines become Sentry events (they bypass stdlib logging,
    which is what Sentry's logging integration watches). Runs after redaction."""
    if _state["sentry"] and name in ("error", "critical", "exception") and "_record" not in event:
        import sentry_sdk

        fields = {k: v for k, v in event.items() if k != "event"}
        sentry_sdk.capture_message(str(event.get("event")), level="error", extras=fields)
    return event


# --- the API: one middleware --------------------------------------------------------------

Scope = MutableMapping[str, Any]
ASGIApp = Callable[..., Any]


class RequestContext:
    """Binds a request id (the caller's X-Request-ID or a new one), the method and the path to
    every log line of the request, and returns the id in X-Request-ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        _tag_sentry({"request_id": request_id})
        with bound_contextvars(
            request_id=request_id, method=scope.get("method"), path=scope.get("path")
        ):
            await self.app(scope, receive, send_with_id)


# --- Celery: signal handlers ---------------------------------------------------------------


def connect_celery() -> None:
    """Connect the handlers (Celery's signals are global: once per process is enough)."""
    from celery import signals

    dbwork.install()
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="opsgate.obs.init")
    signals.worker_process_init.connect(
        _on_child_init, weak=False, dispatch_uid="opsgate.obs.child"
    )
    signals.beat_init.connect(_on_beat_init, weak=False, dispatch_uid="opsgate.obs.beat")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="opsgate.obs.prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="opsgate.obs.postrun")
    for sig in (signals.worker_process_shutdown, signals.worker_shutdown):
        sig.connect(_on_shutdown, weak=False, dispatch_uid=f"opsgate.obs.{sig.name}")


def _forks(worker: Any) -> bool:
    pool = worker.pool_cls
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return "prefork" in name or "processes" in name


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # Sentry before any task tracer is built (prefork children inherit the client and
    # restart its sender thread); tracing here only if this process runs the tasks.
    init_sentry("worker")
    if sender is None or not _forks(sender):
        init_tracing("worker")


def _on_child_init(**_: Any) -> None:
    init_process("worker")


def _on_beat_init(**_: Any) -> None:
    init_process("beat")


def _on_shutdown(**_: Any) -> None:
    flush()


def _on_prerun(
    task_id: str | None = None,
    task: Any = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """Bind the task's ids to every log line it writes; record how long it queued."""

    structlog.contextvars.clear_contextvars()
    name = getattr(task, "name", None)
    # Stage task names are "opsgate.<stage>", the names the stage harness logs.
    is_stage = any(s.task == name for s in STAGES.values())
    stage = name.removeprefix("opsgate.") if is_stage and name else None
    job_id = (kwargs or {}).get("job_id") or (args[0] if args and stage else None)
    context = {"task": name, "task_id": task_id, "stage": stage, "job_id": job_id}
    bound = {k: v for k, v in context.items() if v is not None}
    bind_contextvars(**bound)
    _tag_sentry(bound)
    dbwork.start()
    request = getattr(task, "request", None)
    published = request.get(PUBLISHED_HEADER) if request is not None else None
    if request is not None and isinstance(published, int | float):
        queue = (request.delivery_info or {}).get("routing_key") or "unknown"
        _task_local.queue_wait = (queue, _waited(published, request.eta))
    else:
        _task_local.queue_wait = (None, None)


def _waited(published: float, eta: Any) -> float:
    """Seconds since the message became due (a retry's countdown is not queue wait)."""
    start = published
    if isinstance(eta, str):
        from datetime import datetime

        with contextlib.suppress(ValueError):
            start = max(start, datetime.fromisoformat(eta).timestamp())
    return max(0.0, time.time() - start)


def _on_postrun(task: Any = None, **_: Any) -> None:
    """Record the run's queue wait and database work (one Redis round trip), unbind its ids."""
    tally = dbwork.stop()
    queue, waited = getattr(_task_local, "queue_wait", (None, None))
    _task_local.queue_wait = (None, None)
    metrics.record_task(getattr(task, "name", None) or "unknown", queue, waited, tally)
    structlog.contextvars.clear_contextvars()
