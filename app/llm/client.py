"""The OpenAI SDK client, one per process and timeout, and the error classes that matter.

Retries are owned by one layer only. The SDK's own retries are off (max_retries=0): a 429,
a 5xx or a timeout moves the call to the next model or tier at once (the planner), and
when every model is unavailable the stage raises RetryableError, which the stage harness
retries with backoff against the job's retry budget. With SDK retries on as well, one
plan could make max_retries x models x Celery-retries calls.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from app.core.clients import per_process
from app.settings import get_settings
from tools.base import retry_after_seconds

if TYPE_CHECKING:
    import openai

# The SDK (~14 MB resident in a worker process) is imported where a call first needs it,
# not with this module: a worker whose model tiers are off never loads it.


def unavailable_errors() -> tuple[type[Exception], ...]:
    """The SDK's answers that say "this model, now, cannot": move on to the next model or
    tier (429, 5xx, timeout, connection)."""
    import openai

    return (
        openai.RateLimitError,
        openai.InternalServerError,
        openai.APITimeoutError,
        openai.APIConnectionError,
    )


def client(
    timeout: float, base_url: str | None = None, api_key_env: str | None = None
) -> openai.OpenAI:
    """This process's client for calls with `timeout` seconds, to the tier's own endpoint
    (`base_url`, key from the environment variable named `api_key_env`) or the default one
    (OPENAI_BASE_URL, OPENAI_API_KEY)."""

    def make() -> openai.OpenAI:
        import openai

        settings = get_settings()
        if api_key_env is not None:
            # models.yaml names the variable (a tier's key is not a fixed Settings field);
            # read here, once per process, and never logged.
            key = os.environ.get(api_key_env)
        else:
            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        # A local OpenAI-compatible server may need no key; the SDK insists on one.
        return openai.OpenAI(
            api_key=key or "not-needed",
            base_url=base_url or settings.openai_base_url,
            timeout=timeout,
            max_retries=0,
        )

    return per_process(f"openai:{timeout}:{base_url}:{api_key_env}", make)


def retry_after(exc: Exception) -> float | None:
    """The server's Retry-After, when an error carried one."""
    response = getattr(exc, "response", None)
    return retry_after_seconds(response.headers) if response is not None else None
