"""The scripted OpenAI model server, driven by the real openai SDK over real HTTP."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletionSystemMessageParam, ChatCompletionUserMessageParam
from pydantic import BaseModel, ValidationError

from tools.sandbox.app import create_app
from tools.sandbox.llm.routes import NO_SCRIPT_MESSAGE, serve_in_thread


class Plan(BaseModel):
    """A structured answer, as the planner asks for one."""

    action: str
    amount: int


PLAN = {"action": "refund", "amount": 2500}
SYSTEM: ChatCompletionSystemMessageParam = {"role": "system", "content": "You plan."}
USER: ChatCompletionUserMessageParam = {
    "role": "user",
    "content": [{"type": "text", "text": "refund ticket 4821"}],
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The model app under uvicorn in a thread; yields the SDK base URL (…/v1)."""
    base_url, stop = serve_in_thread()
    yield base_url
    stop()


@pytest.fixture
def url(server: str) -> str:
    """The base URL, with an empty script, the initial default and no recorded requests."""
    httpx.delete(f"{_root(server)}/_models/script").raise_for_status()
    httpx.delete(f"{_root(server)}/_models/requests").raise_for_status()
    return server


def _root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def script(base_url: str, *entries: dict[str, Any]) -> dict[str, Any]:
    """Queue entries; the control endpoint's answer."""
    response = httpx.post(f"{_root(base_url)}/_models/script", json={"responses": list(entries)})
    assert response.status_code == 200, response.text
    return response.json()


def requests(base_url: str) -> list[dict[str, Any]]:
    """The chat completion requests the server recorded."""
    return httpx.get(f"{_root(base_url)}/_models/requests").json()["requests"]


SDK_KEY = "test"


def sdk(base_url: str, timeout: float = 5, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url, api_key=SDK_KEY, max_retries=max_retries, timeout=timeout
    )


def ask(client: openai.OpenAI, text: str = "hello", model: str = "m") -> str | None:
    """One plain completion; its content."""
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return completion.choices[0].message.content


# --- answers --------------------------------------------------------------------------------


def test_parse_returns_the_scripted_object_with_usage(url: str) -> None:
    assert script(url, {"content": PLAN}) == {"added": 1, "queued": 1}

    completion = sdk(url).chat.completions.parse(
        model="planner-x", messages=[SYSTEM, USER], response_format=Plan, temperature=0
    )

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "planner-x"
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.parsed == Plan(**PLAN)
    assert choice.message.content == json.dumps(PLAN)
    assert choice.message.refusal is None
    usage = completion.usage
    assert usage is not None
    # "You plan." + "refund ticket 4821": 27 characters; the answer: 35.
    assert usage.prompt_tokens == math.ceil(27 / 4)
    assert usage.completion_tokens == math.ceil(len(json.dumps(PLAN)) / 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_wire_shape_is_exactly_openais(url: str) -> None:
    script(url, {"content": "plain text", "usage": {"prompt_tokens": 11, "completion_tokens": 3}})

    response = httpx.post(
        f"{url}/chat/completions",
        json={"model": "m", "messages": [USER], "max_tokens": 5, "some_future_field": {"x": 1}},
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    }
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 60
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "plain text", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    assert body["system_fingerprint"] is None


def test_refusal_sets_refusal_and_no_parsed_object(url: str) -> None:
    script(url, {"refusal": "I can't help with that."})

    completion = sdk(url).chat.completions.parse(model="m", messages=[USER], response_format=Plan)

    message = completion.choices[0].message
    assert message.refusal == "I can't help with that."
    assert message.content is None
    assert message.parsed is None
    assert completion.usage is not None and completion.usage.completion_tokens == 6


def test_rate_limit_carries_retry_after(url: str) -> None:
    script(url, {"status": 429, "headers": {"Retry-After": "1"}})

    with pytest.raises(openai.RateLimitError) as caught:
        ask(sdk(url))

    exc = caught.value
    assert exc.status_code == 429
    assert exc.response.headers["retry-after"] == "1"
    assert exc.code == "rate_limit_exceeded"
    assert exc.body == {
        "message": "Rate limit reached for requests. Please try again in 1s.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


def test_server_error_with_scripted_message(url: str) -> None:
    script(url, {"status": 500}, {"status": 503, "error": "overloaded", "code": "busy"})
    client = sdk(url)

    with pytest.raises(openai.InternalServerError) as first:
        ask(client)
    with pytest.raises(openai.InternalServerError) as second:
        ask(client)

    assert first.value.status_code == 500
    assert first.value.type == "server_error"
    assert (second.value.status_code, second.value.message) == (503, "Error code: 503 - overloaded")
    assert second.value.code == "busy"


def test_other_statuses_map_to_the_sdks_exceptions(url: str) -> None:
    script(
        url,
        {"status": 400, "error": "bad schema"},
        {"status": 401, "error": "Incorrect API key provided", "code": "invalid_api_key"},
        {"status": 599},
    )
    client = sdk(url)

    with pytest.raises(openai.BadRequestError) as bad:
        ask(client)
    with pytest.raises(openai.AuthenticationError) as auth:
        ask(client)

    with pytest.raises(openai.InternalServerError) as unassigned:
        ask(client)

    assert bad.value.type == "invalid_request_error"
    assert auth.value.code == "invalid_api_key"
    assert unassigned.value.message == "Error code: 599 - Server Error"


def test_the_sdk_retries_a_rate_limit_then_gets_the_next_entry(url: str) -> None:
    script(url, {"status": 429, "headers": {"retry-after-ms": "10"}}, {"content": "second"})

    assert ask(sdk(url, max_retries=1)) == "second"

    retries = [r["headers"]["x-stainless-retry-count"] for r in requests(url)]
    assert retries == ["0", "1"]


def test_delay_beyond_the_client_timeout_times_out(url: str) -> None:
    script(url, {"content": "late", "delay_ms": 3000}, {"content": "on time", "match": "quick"})
    client = sdk(url, timeout=0.5)

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(client, "slow")
    assert time.monotonic() - started < 2.5
    # The delayed answer is still pending on the server; other requests are served meanwhile.
    assert ask(client, "quick") == "on time"


def test_delays_overlap_instead_of_queueing(url: str) -> None:
    script(url, {"content": "slow", "delay_ms": 400, "times": 5})
    client = sdk(url)

    started = time.monotonic()
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: ask(client), range(5)))

    assert answers == ["slow"] * 5
    assert time.monotonic() - started < 1.5


def test_invalid_json_body_raises_json_decode_error(url: str) -> None:
    # The SDK does not wrap a 200 whose body is not JSON: json.JSONDecodeError (a ValueError)
    # reaches the caller, not an openai.APIError.
    script(url, {"raw": "{not json"}, {"raw": "{not json", "raw_status": 502})
    client = sdk(url)

    with pytest.raises(json.JSONDecodeError):
        ask(client)
    # On an error status the SDK keeps the text as the body instead.
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client)
    assert caught.value.status_code == 502
    assert caught.value.body == "{not json"


def test_content_that_is_not_the_schema_fails_parse(url: str) -> None:
    script(url, {"content": "not json"}, {"content": {"action": "refund"}})
    client = sdk(url)

    for _ in range(2):
        with pytest.raises(ValidationError):
            client.chat.completions.parse(model="m", messages=[USER], response_format=Plan)


def test_stream_is_refused_in_openais_shape(url: str) -> None:
    script(url, {"content": "never", "times": -1})

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )

    assert caught.value.param == "stream"
    assert caught.value.code == "unsupported_parameter"


def test_malformed_requests_answer_400(url: str) -> None:
    cases: list[Any] = [b"{oops", {"messages": [USER]}, {"model": "m"}, {"model": "m", "x": 1}]
    for case in cases:
        if isinstance(case, bytes):
            response = httpx.post(f"{url}/chat/completions", content=case)
        else:
            response = httpx.post(f"{url}/chat/completions", json=case)
        assert response.status_code == 400, case
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    assert [r["body"] for r in requests(url)][0] == "{oops"


# --- choosing entries -----------------------------------------------------------------------


def test_match_routes_concurrent_requests(url: str) -> None:
    script(
        url,
        {"content": "generic", "times": -1},
        {"match": "ticket 1", "content": "one", "times": -1, "delay_ms": 50},
        {"match": "ticket 2", "content": "two", "times": -1},
    )
    client = sdk(url)
    texts = [f"about ticket {1 + i % 3}" for i in range(30)]

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda text: ask(client, text), texts))

    expected = {"about ticket 1": "one", "about ticket 2": "two", "about ticket 3": "generic"}
    assert answers == [expected[text] for text in texts]


def test_match_reads_every_role_and_content_parts(url: str) -> None:
    script(url, {"match": "You plan", "content": "system matched"})

    completion = sdk(url).chat.completions.create(model="m", messages=[SYSTEM, USER])

    assert completion.choices[0].message.content == "system matched"


def test_entries_are_taken_once_under_concurrency(url: str) -> None:
    script(url, *({"content": f"answer {i}"} for i in range(20)))
    client = sdk(url)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: ask(client), range(20)))

    assert sorted(answers, key=lambda a: int(str(a).split()[1])) == [
        f"answer {i}" for i in range(20)
    ]
    with pytest.raises(openai.InternalServerError):
        ask(client)


def test_times_counts_down_and_minus_one_repeats(url: str) -> None:
    script(url, {"content": "twice", "times": 2}, {"content": "forever", "times": -1})
    client = sdk(url)

    answers = [ask(client) for _ in range(5)]

    assert answers == ["twice", "twice", "forever", "forever", "forever"]
    queue = httpx.get(f"{_root(url)}/_models/script").json()["responses"]
    assert queue == [{"content": "forever", "times": -1, "remaining": -1}]


def test_model_restricts_an_entry(url: str) -> None:
    script(url, {"model": "big", "content": "from big"}, {"model": "small", "content": "small"})
    client = sdk(url)

    assert ask(client, model="small") == "small"
    assert ask(client, model="big") == "from big"
    with pytest.raises(openai.InternalServerError):
        ask(client, model="big")


def test_default_answers_when_nothing_matches_and_can_be_replaced(url: str) -> None:
    script(url, {"match": "refund", "content": "matched"})
    client = sdk(url)

    with pytest.raises(openai.InternalServerError) as caught:
        ask(client, "something else")
    assert caught.value.body == {
        "message": NO_SCRIPT_MESSAGE,
        "type": "server_error",
        "param": None,
        "code": None,
    }

    put = httpx.put(f"{_root(url)}/_models/default", json={"content": {"action": "escalate"}})
    assert put.status_code == 200, put.text
    assert ask(client, "something else") == '{"action": "escalate"}'
    assert ask(client, "something else") == '{"action": "escalate"}'
    assert ask(client, "a refund please") == "matched"

    httpx.delete(f"{_root(url)}/_models/script").raise_for_status()
    with pytest.raises(openai.InternalServerError):
        ask(client, "something else")


# --- control endpoints ----------------------------------------------------------------------


def test_requests_are_recorded_with_what_the_sdk_sent(url: str) -> None:
    script(url, {"content": PLAN})
    sdk(url).chat.completions.parse(model="m", messages=[USER], response_format=Plan)

    recorded = requests(url)

    assert len(recorded) == 1
    first = recorded[0]
    assert first["model"] == "m"
    assert first["headers"]["authorization"] is True
    assert first["headers"]["x-stainless-retry-count"] == "0"
    sent = first["headers"]["authorization_sha256"]
    assert sent == hashlib.sha256(f"Bearer {SDK_KEY}".encode()).hexdigest()
    body = first["body"]
    assert body["messages"] == [USER]
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]
    assert (schema["name"], schema["strict"]) == ("Plan", True)
    assert set(schema["schema"]["properties"]) == {"action", "amount"}
    assert "alice@example.com" not in json.dumps(recorded)

    httpx.post(f"{url}/chat/completions", json={"model": "m", "messages": [USER]})
    assert requests(url)[1]["headers"] == {
        "authorization": False,
        "authorization_sha256": None,
        "x-stainless-retry-count": None,
    }
    httpx.delete(f"{_root(url)}/_models/requests").raise_for_status()
    assert requests(url) == []


def test_models_lists_scripted_and_requested_names(url: str) -> None:
    script(url, {"model": "scripted-model", "content": "x"})
    with pytest.raises(openai.InternalServerError):
        ask(sdk(url), model="asked-model")

    listed = sdk(url).models.list()

    assert [m.id for m in listed.data] == ["scripted-model", "asked-model"]
    assert all(m.object == "model" for m in listed.data)


@pytest.mark.parametrize(
    "entry",
    [
        {"content": "x", "status": 500},
        {},
        {"match": "only a match"},
        {"refusal": None},
        {"status": 200},
        {"status": 429, "raw": "{}"},
        {"content": "x", "times": 0},
        {"content": "x", "times": -2},
        {"content": "x", "delay_ms": -1},
        {"content": "x", "error": "only for status"},
        {"status": 500, "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
        {"content": "x", "raw_status": 500},
        {"content": "x", "usage": {"prompt_tokens": 1}},
        {"content": "x", "unknown": 1},
    ],
)
def test_bad_entries_are_rejected(url: str, entry: dict[str, Any]) -> None:
    response = httpx.post(f"{_root(url)}/_models/script", json={"responses": [{"content": "ok"}]})
    assert response.status_code == 200

    response = httpx.post(
        f"{_root(url)}/_models/script", json={"responses": [{"content": "kept"}, entry]}
    )

    assert response.status_code == 422, response.text
    # Nothing of a rejected script is queued.
    assert len(httpx.get(f"{_root(url)}/_models/script").json()["responses"]) == 1


def test_default_rejects_entry_only_fields(url: str) -> None:
    response = httpx.put(f"{_root(url)}/_models/default", json={"content": "x", "match": "y"})

    assert response.status_code == 422


def test_content_null_is_a_json_answer(url: str) -> None:
    script(url, {"content": None})

    assert ask(sdk(url)) == "null"


# --- mounted in the sandbox -----------------------------------------------------------------


def test_sandbox_app_serves_the_model_routes(tmp_path: Path) -> None:
    with TestClient(create_app(str(tmp_path / "sandbox.db"))) as client:
        stripe_unknown = client.get("/v1/nonexistent")
        queued = client.post("/_models/script", json={"responses": [{"content": "hi"}]})
        # A fault on every system must not reach the model paths, though they are under /v1/.
        fault = client.post("/_sandbox/faults", json={"system": "*", "error_rate": 1.0})
        stripe = client.get("/v1/charges/ch_1001", headers={"Authorization": "Bearer sk_test_x"})
        answer = client.post("/v1/chat/completions", json={"model": "m", "messages": [USER]})
        wrong_method = client.get("/v1/chat/completions")
        listed = client.get("/v1/models")

    # Other /v1/ paths keep Stripe's 404 and Stripe's faults.
    assert stripe_unknown.status_code == 404
    assert stripe_unknown.json()["error"]["message"].startswith("Unrecognized request URL")
    assert queued.status_code == fault.status_code == 200
    assert stripe.status_code == 503
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "hi"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == {
        "message": "Invalid URL (GET /v1/chat/completions)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert [m["id"] for m in listed.json()["data"]] == ["m"]
