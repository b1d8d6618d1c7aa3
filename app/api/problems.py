"""Errors as RFC 9457 problem documents: every failure is one clear `detail`."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import (
    ConflictError,
    Forbidden,
    InputError,
    MalformedBody,
    ServiceUnavailable,
    Unauthorized,
    one_line,
)

log = structlog.get_logger(__name__)

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HTTPProblem(Exception):
    """Raised by request handling to answer with a given status and detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def problem(status: int, detail: str) -> JSONResponse:
    """A problem+json response."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {
            "type": "about:blank",
            "title": TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
        },
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


_STATUS: list[tuple[type[Exception], int]] = [
    (Unauthorized, 401),
    (Forbidden, 403),
    (ConflictError, 409),
    (MalformedBody, 400),
    (InputError, 422),
    (ServiceUnavailable, 503),
]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(HTTPProblem)
    async def _problem(_r: Request, exc: HTTPProblem) -> JSONResponse:
        return problem(exc.status, exc.detail)

    for exc_type, status in _STATUS:
        app.add_exception_handler(exc_type, _fixed(status))

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def _database(_r: Request, exc: Exception) -> JSONResponse:
        # Nothing was half-stored (the transaction rolled back); the sender should retry.
        log.error("api.database_unavailable", error=str(exc).splitlines()[0])
        return problem(503, "the database is unavailable; nothing was stored, retry later")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, one_line(exc, "request"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unhandled", path=request.url.path)
        return problem(500, "internal error; it has been logged")


def _fixed(status: int) -> Any:
    async def handler(_r: Request, exc: Exception) -> JSONResponse:
        return problem(status, str(exc))

    return handler
