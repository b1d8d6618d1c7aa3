"""Structured logging: JSON lines by default, secrets and PII never included.

Every line, ours (structlog) or a library's (stdlib logging: Celery, uvicorn), goes through
the same chain: the bound context (job, stage and task ids in a task; request id in the API,
see app.telemetry.observability), the active trace and span ids, then the exception text, and
only then the PII redaction, so a traceback's message is redacted too.
"""

from __future__ import annotations

import logging
import sys

import structlog

from app.telemetry import observability

# Libraries that log every request at INFO.
CHATTY_LIBRARIES = ("httpx", "httpcore", "stripe", "urllib3")


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog and the standard library to write one JSON object per line."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        observability.add_trace_ids,
        structlog.processors.format_exc_info,
        observability.redact_log,
    ]
    structlog.configure(
        processors=[*shared, observability.errors_to_sentry, renderer],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The HTTP clients' own line per request (httpx: "HTTP Request: ..."; stripe-python:
    # "Request to Stripe api" and "Stripe API response") was a third of a worker's log
    # lines and their formatting and redaction a tenth of its CPU per job, saying less than
    # tool_calls and the audit chain record for every call. Their warnings still show;
    # at DEBUG everything does.
    quiet = max(logging.WARNING, root.level) if root.level > logging.DEBUG else root.level
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
