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
