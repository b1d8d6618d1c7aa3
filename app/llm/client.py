"""The OpenAI SDK client, one per process and timeout, and the error classes that matter.

Retries are owned by one layer only. The SDK's own retries are off (max_retries=0): a 429,
a 5xx or a timeout moves the call to the next model or tier at once (the planner), and
when every model is unavailable the stage raises RetryableError, which the stage harness
retries with backoff against the job's retry budget. With SDK retries on as well, one
plan could make max_retries x models x Celery-retries calls.
"""

from __future__ import annotations

import openai

from app.settings import get_settings
from tools.base import per_process, retry_after_seconds

# Answers that say "this model, now, cannot": move on to the next model or tier.
UNAVAILABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


def client(timeout: float) -> openai.OpenAI:
    """This process's client for calls with `timeout` seconds."""

    def make() -> openai.OpenAI:
        settings = get_settings()
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        # A local OpenAI-compatible server may need no key; the SDK insists on one.
        return openai.OpenAI(
            api_key=key or "not-needed",
            base_url=settings.openai_base_url,
            timeout=timeout,
            max_retries=0,
        )

    return per_process(f"openai:{timeout}", make)


def retry_after(exc: Exception) -> float | None:
    """The server's Retry-After, when an error carried one."""
    response = getattr(exc, "response", None)
    return retry_after_seconds(response.headers) if response is not None else None
