"""The workers' Celery app: the configuration of app.jobs.celery_config, plus the telemetry
hooks (log context, Sentry and tracing per task) every worker process sets up."""

from __future__ import annotations

from app.jobs.celery_config import make_celery
from app.telemetry import observability

celery_app = make_celery()
# Log context, Sentry and tracing per task, set up in each worker process.
observability.connect_celery()
