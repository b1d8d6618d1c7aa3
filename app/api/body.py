"""Reading request bodies with a size limit and a content-type check, before any parsing."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from app.api.problems import HTTPProblem
from app.errors import MalformedBody
from app.settings import get_settings

JSON_TYPES = ("application/json",)
XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-case."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, accepted: tuple[str, ...]) -> bytes:
    """The raw body: 415 for another content type, 413 past the configured limit."""
    kind = media_type(request)
    if kind not in accepted and not (kind.endswith("+json") and "application/json" in accepted):
        raise HTTPProblem(
            415, f"content type must be {' or '.join(accepted)}, got {kind or 'none'}"
        )
    limit = get_settings().max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """Parse a JSON body, or 400 saying why it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise MalformedBody(f"body is not valid JSON: {str(exc)[:200]}") from exc
