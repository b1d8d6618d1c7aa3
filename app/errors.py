"""The one error hierarchy: tasks map these to retry, fail or escalate."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol


class HasErrors(Protocol):
    """A pydantic ValidationError, or FastAPI's RequestValidationError: `.errors()`."""

    def errors(self) -> Sequence[Mapping[str, Any]]: ...


def one_line(
    exc: HasErrors,
    whole: str = "value",
    limit: int | None = None,
    where: Callable[[tuple[Any, ...]], str] | None = None,
) -> str:
    """A validation error as one line, `field.path: problem; ...`: the one way opsgate shows
    one (`whole` names a problem of the value as a whole; `where` may say more of a field,
    e.g. its line in a file; at most `limit` problems)."""
    parts = []
    for e in list(exc.errors())[:limit]:
        loc = tuple(e["loc"])
        field = ".".join(str(p) for p in loc) or whole
        prefix = f"{where(loc)}: " if where is not None else ""
        parts.append(f"{prefix}{field}: {e['msg']}")
    return "; ".join(parts)


class OpsgateError(Exception):
    """Raised when opsgate itself detects a problem (root of every domain error)."""


class RetryableError(OpsgateError):
    """Raised when a transient failure (timeout, 429, 5xx, lost connection) may pass on retry."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(OpsgateError):
    """Raised when retrying cannot help (bad arguments, unknown tool, a 4xx validation error)."""


class NotFound(PermanentError):
    """Raised when a downstream system says the record does not exist: each adapter maps its
    vendor's answer (Stripe `resource_missing`, Okta `E0000007`, Salesforce `NOT_FOUND`,
    Zendesk's 404) to this, so no caller reads an error's text to tell."""


class EscalationRequired(OpsgateError):
    """Raised when a stage decides a human must look at the job before anything else happens."""

    def __init__(self, reason: str, detail: str, evidence: dict[str, Any] | None = None) -> None:
        from app.reasons import check

        super().__init__(f"{reason}: {detail}")
        self.reason = check(reason)
        self.detail = detail
        self.evidence = evidence or {}


class IllegalTransition(OpsgateError):
    """Raised when a job is asked to move between two states the state machine does not link."""


class StaleJob(OpsgateError):
    """Raised when another worker advanced the job first (its version or status changed)."""


class ConflictError(OpsgateError):
    """Raised when an idempotency key is reused with different arguments."""


class ServiceUnavailable(OpsgateError):
    """Raised when the database or Redis cannot be reached; the message names which."""


class SchemaNotCurrent(ServiceUnavailable):
    """Raised when the database has no opsgate schema or is not at the migrations' head."""


class NotInstalled(OpsgateError):
    """Raised when a command needs an optional part that is not installed (an extra such as
    `local`, the model weights, a file it was pointed at); the message names the install."""


class InputError(OpsgateError):
    """Raised when a submission is malformed or does not match its workflow's input schema."""


class Unauthorized(OpsgateError):
    """Raised when a request carries no valid credential or signature (HTTP 401)."""


class Forbidden(OpsgateError):
    """Raised when an authenticated or identified caller may not do this (HTTP 403)."""


class MalformedBody(InputError):
    """Raised when a request body cannot be parsed at all (not JSON, not well-formed XML)."""


class Parked(OpsgateError):
    """Raised when a call may not go out now but may later (the job parks, it does not fail):
    an open breaker, a spent rate limit, a kill switch. `retry_at` is when to try again (0: when
    a person releases it)."""

    def __init__(self, system: str, retry_at: float, why: str) -> None:
        super().__init__(f"{system}: {why}")
        self.system = system
        self.retry_at = retry_at
        self.why = why


class CircuitOpen(Parked):
    """Raised when a downstream system's breaker refuses calls; the job parks until retry_at."""

    def __init__(self, system: str, retry_at: float, why: str = "circuit open") -> None:
        super().__init__(system, retry_at, why)


class RateLimited(Parked):
    """Raised when a tool's fleet-wide rate limit is spent; the job parks until retry_at."""


class KillSwitchEngaged(Parked):
    """Raised when a kill switch covers a tool call; the job parks until it is released."""

    def __init__(self, scope: str, why: str) -> None:
        super().__init__(scope, 0.0, why)
        self.scope = scope


class TokenRefused(OpsgateError):
    """Raised when an approval token does not authorize the action it is presented for."""


class JudgeUnavailable(OpsgateError):
    """Raised when no model of the soft check's judging tier gave a usable answer."""
