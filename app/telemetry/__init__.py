"""Logs, metrics, Sentry and tracing, and the Celery signals that feed them."""
