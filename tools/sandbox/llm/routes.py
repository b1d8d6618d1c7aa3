"""A scripted OpenAI Chat Completions server: `/v1/chat/completions`, `/v1/models` and the
`/_models` control endpoints that queue the answers and record what was asked.

Tests and benchmarks point the real `openai` SDK at it (OPENAI_BASE_URL) and script each answer:
a completion, a refusal, an OpenAI-shaped error or a raw body, optionally delayed. State lives in
memory on `app.state`, one copy per server process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

NO_SCRIPT_MESSAGE = "no scripted response for this request"
# Paths this module serves under /v1/; the sandbox keeps them out of Stripe's 404 and faults.
_OWNED = ("/v1/chat/", "/v1/models")
_ALPHANUM = string.ascii_letters + string.digits
# OpenAI's own wording for the errors scripts raise most often without a message of their own.
_MESSAGES = {
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The server is overloaded or not ready yet.",
}

_KINDS = ("content", "refusal", "status", "raw")
# Options that belong to some kinds of answer only: a misplaced one is a mistake in the script.
_OPTION_KINDS = {
    "error": ("status",),
    "type": ("status",),
    "code": ("status",),
    "raw_status": ("raw",),
    "usage": ("content", "refusal"),
}

api = APIRouter(prefix="/v1", tags=["models"])
control = APIRouter(prefix="/_models", tags=["models"])


# --- scripts --------------------------------------------------------------------------------


class Usage(BaseModel):
    """Token counts reported instead of the computed estimate."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)


class Answer(BaseModel):
    """How to answer one request: exactly one of content, refusal, status or raw."""

    model_config = ConfigDict(extra="forbid")

    content: Any = None
    refusal: str | None = None
    status: int | None = Field(None, ge=400, le=599)
    error: str | None = None
    type: str | None = None
    code: str | None = None
    raw: str | None = None
    raw_status: int = Field(200, ge=100, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    usage: Usage | None = None
    delay_ms: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Answer:
        """Reject entries that are not exactly one kind of answer, or mix in another's options."""
        # `content` may legitimately be JSON null (answered as "null"), so "set" means "given".
        given = self.model_fields_set
        kinds = [k for k in _KINDS if k in given]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of content, refusal, status, raw (got "
                f"{', '.join(kinds) or 'none'})"
            )
        kind = kinds[0]
        if kind != "content" and getattr(self, kind) is None:
            raise ValueError(f"{kind} must not be null")
        for option, kinds_allowed in _OPTION_KINDS.items():
            if option in given and kind not in kinds_allowed:
                raise ValueError(f"{option} only applies to a {' or '.join(kinds_allowed)} answer")
        return self

    @property
    def kind(self) -> str:
        """Which kind of answer this is: content, refusal, status or raw."""
        return next(k for k in _KINDS if k in self.model_fields_set)


class ScriptEntry(Answer):
    """A queued answer, for the requests it matches, `times` times (-1: forever)."""

    # A text the request's messages must hold, or several that must all be there.
    match: str | list[str] | None = None
    model: str | None = None
    times: int = Field(1, ge=-1)

    @model_validator(mode="after")
    def _times_not_zero(self) -> ScriptEntry:
        """An entry that answers nothing is a mistake in the script."""
        if self.times == 0:
            raise ValueError("times must be a positive count or -1 (forever)")
        return self


class Script(BaseModel):
    """The body of POST /_models/script."""

    model_config = ConfigDict(extra="forbid")

    responses: list[ScriptEntry]


DEFAULT_ANSWER = Answer(status=500, error=NO_SCRIPT_MESSAGE, type="server_error")


@dataclass
class _Queued:
    entry: ScriptEntry
    remaining: int  # -1: forever


class ModelScript:
    """One server's queued entries, its default answer and the requests it received."""

    def __init__(self) -> None:
        # Control endpoints run in the threadpool and completions on the event loop: a thread
        # lock (held only for list operations, never across an await) serves both.
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._default = DEFAULT_ANSWER
        self._requests: list[dict[str, Any]] = []
        self.created = int(time.time())  # the `created` of every model in /v1/models

    def add(self, entries: list[ScriptEntry]) -> int:
        """Append entries; the number now queued."""
        with self._lock:
            self._queue.extend(_Queued(e, e.times) for e in entries)
            return len(self._queue)

    def clear(self) -> None:
        """Drop every entry and restore the initial default."""
        with self._lock:
            self._queue.clear()
            self._default = DEFAULT_ANSWER

    def set_default(self, answer: Answer) -> None:
        """Answer with `answer` whenever no entry matches."""
        with self._lock:
            self._default = answer

    def snapshot(self) -> dict[str, Any]:
        """The queue with each entry's remaining count, and the default."""
        with self._lock:
            return {
                "responses": [{**_dump(q.entry), "remaining": q.remaining} for q in self._queue],
                "default": _dump(self._default),
            }

    def record(self, record: dict[str, Any]) -> None:
        """Remember a request as received."""
        with self._lock:
            self._requests.append(record)

    def take(self, model: str, text: str) -> Answer:
        """The answer for a request for `model` whose messages read `text`, used up by one.

        Entries with a `match` found in `text` come before catch-all entries; within each, the
        first queued wins; nothing matching: the default. Taking happens on arrival, so a
        request the client abandons still counts and its retry gets the next entry.
        """
        with self._lock:
            candidates = [
                q
                for q in self._queue
                if (q.entry.model is None or q.entry.model == model)
                and _matches(q.entry.match, text)
            ]
            if not candidates:
                return self._default
            chosen = next((q for q in candidates if q.entry.match is not None), candidates[0])
            if chosen.remaining > 0:
                chosen.remaining -= 1
                if chosen.remaining == 0:
                    self._queue.remove(chosen)
            return chosen.entry

    def requests(self) -> list[dict[str, Any]]:
        """Every chat completion request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._requests.clear()

    def models(self) -> list[str]:
        """Model names in queued entries and in the requests received, first seen first."""
        with self._lock:
            names = [q.entry.model for q in self._queue] + [r["model"] for r in self._requests]
        return list(dict.fromkeys(n for n in names if isinstance(n, str)))


def _matches(match: str | list[str] | None, text: str) -> bool:
    if match is None:
        return True
    return all(m in text for m in ([match] if isinstance(match, str) else match))


def _dump(answer: Answer) -> dict[str, Any]:
    """An entry as given (its defaults left out)."""
    return answer.model_dump(exclude_unset=True)


def _script(request: Request) -> ModelScript:
    script: ModelScript = request.app.state.model_script
    return script


# --- the OpenAI wire format -----------------------------------------------------------------


def _new_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUM) for _ in range(length))


def openai_error(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape, with the x-request-id every OpenAI answer carries."""
    if type_ is None:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        if status == 429:
            type_ = "requests"
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    all_headers = {"x-request-id": _new_id("req_", 32), **(headers or {})}
    return JSONResponse(body, status, headers=all_headers)


def owns(path: str) -> bool:
    """True for the /v1/ paths this module serves (as opposed to the Stripe emulation's)."""
    return path.startswith(_OWNED)


async def not_found(request: Request, exc: Exception) -> Response:
    """Unknown routes and wrong methods on model paths, in OpenAI's error shape."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code not in (404, 405):
        return await http_exception_handler(request, exc)
    message = f"Invalid URL ({request.method} {request.url.path})"
    return openai_error(exc.status_code, message)


def _texts(messages: list[Any]) -> list[str]:
    """The text of every message: string contents and the text of content parts."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
    return texts


def _tokens(chars: int) -> int:
    """OpenAI's rule of thumb, four characters a token; never zero."""
    return max(1, math.ceil(chars / 4))


def _invalid(body: Any) -> JSONResponse | None:
    """OpenAI's 400 for a request body it would refuse, or None."""
    if not isinstance(body, dict):
        return openai_error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return openai_error(400, "you must provide a model parameter", param="model")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        message = "Missing required parameter: 'messages'."
        return openai_error(400, message, param="messages", code="missing_required_parameter")
    if body.get("stream"):
        message = "stream=true is not supported by the opsgate scripted model server."
        return openai_error(400, message, param="stream", code="unsupported_parameter")
    return None


def _completion(answer: Answer, model: str, prompt_chars: int) -> dict[str, Any]:
    """A `chat.completion` object for a content or refusal answer."""
    content: str | None = None
    refusal: str | None = None
    if answer.kind == "refusal":
        refusal = answer.refusal
    else:
        content = answer.content if isinstance(answer.content, str) else json.dumps(answer.content)
    if answer.usage is not None:
        prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    else:
        prompt, completion = _tokens(prompt_chars), _tokens(len(content or refusal or ""))
    return {
        "id": _new_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "system_fingerprint": None,
    }


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # an unassigned code such as 599
        return "Server Error" if status >= 500 else "Client Error"


def _respond(answer: Answer, model: str, prompt_chars: int) -> Response:
    """The HTTP response for an answer."""
    if answer.kind == "status":
        status = answer.status or 500
        message = answer.error or _MESSAGES.get(status) or _phrase(status)
        return openai_error(
            status, message, type_=answer.type, code=answer.code, headers=answer.headers
        )
    if answer.kind == "raw":
        return Response(
            answer.raw, answer.raw_status, headers=answer.headers, media_type="application/json"
        )
    headers = {"x-request-id": _new_id("req_", 32), **answer.headers}
    return JSONResponse(_completion(answer, model, prompt_chars), headers=headers)


# --- routes ---------------------------------------------------------------------------------


@api.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    """Answer a non-streaming Chat Completions request with the next matching scripted entry."""
    raw = await request.body()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    model = body.get("model") if isinstance(body, dict) else None
    headers = request.headers
    record = {
        "model": model,
        "body": body,
        "headers": {
            "authorization": "authorization" in headers,
            # Which key was sent, without keeping it: tests compare against their own hash.
            "authorization_sha256": hashlib.sha256(
                headers.get("authorization", "").encode()
            ).hexdigest()
            if "authorization" in headers
            else None,
            "x-stainless-retry-count": headers.get("x-stainless-retry-count"),
        },
    }
    script = _script(request)
    script.record(record)
    invalid = _invalid(body)
    if invalid is not None:
        return invalid
    texts = _texts(body["messages"])
    answer = script.take(body["model"], "\n".join(texts))
    if answer.delay_ms:
        # asyncio.sleep, not time.sleep: other requests keep being served meanwhile.
        await asyncio.sleep(answer.delay_ms / 1000)
    return _respond(answer, body["model"], sum(map(len, texts)))


@api.get("/models")
def list_models(request: Request) -> dict[str, Any]:
    """The models named in the queue or requested so far, as OpenAI's model list."""
    script = _script(request)
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": script.created, "owned_by": "opsgate"}
            for name in script.models()
        ],
    }


@control.post("/script")
def add_script(script: Script, request: Request) -> dict[str, int]:
    """Queue entries after those already queued."""
    queued = _script(request).add(script.responses)
    return {"added": len(script.responses), "queued": queued}


@control.get("/script")
def show_script(request: Request) -> dict[str, Any]:
    """The queued entries (with what each has left) and the default."""
    return _script(request).snapshot()


@control.delete("/script")
def clear_script(request: Request) -> dict[str, int]:
    """Drop every queued entry and restore the initial default (a 500)."""
    _script(request).clear()
    return {"queued": 0}


@control.put("/default")
def set_default(answer: Answer, request: Request) -> dict[str, Any]:
    """Answer with this whenever no entry matches (match, model and times do not apply)."""
    _script(request).set_default(answer)
    return {"default": _dump(answer)}


@control.get("/requests")
def list_requests(request: Request) -> dict[str, Any]:
    """Every chat completion request received, oldest first: model, body and header facts."""
    return {"requests": _script(request).requests()}


@control.delete("/requests")
def clear_requests(request: Request) -> dict[str, int]:
    """Forget the requests received so far."""
    _script(request).clear_requests()
    return {"requests": 0}


# --- apps -----------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Add the model routes to `app`, with empty script state on app.state."""
    app.state.model_script = ModelScript()
    app.include_router(api)
    app.include_router(control)


def create_model_app() -> FastAPI:
    """An app with only the model routes: no SQLite, no other emulations."""
    app = FastAPI(title="opsgate model sandbox", docs_url="/_models/docs", openapi_url=None)
    install(app)
    app.add_exception_handler(StarletteHTTPException, not_found)
    return app


def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve create_model_app() under uvicorn in a daemon thread (port 0: a free one).

    Returns the base URL for the openai SDK (`http://HOST:PORT/v1`) once the server answers,
    and a function that stops it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening before uvicorn starts: early connections queue instead of being refused.
    sock.listen(128)
    bound = sock.getsockname()[1]
    # A bounded graceful shutdown: a long scripted delay must not hold up stop().
    config = uvicorn.Config(
        create_model_app(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"model-sandbox-{bound}"
    )
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    # A wildcard bind is reached through loopback.
    reach = "127.0.0.1" if host in ("", "0.0.0.0") else host
    base_url = f"http://{reach}:{bound}/v1"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and thread.is_alive():
        try:
            if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                return base_url, stop
        except httpx.TransportError:
            time.sleep(0.02)
    stop()
    raise RuntimeError(f"model sandbox on {host}:{bound} did not start")
