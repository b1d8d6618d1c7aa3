"""`opsgate eval` with a real model endpoint (the local OpenAI-compatible test server standing
in for a vendor or llama.cpp), a case file as the set, the HTML report side by side, and a
SIGTERM that leaves nothing running."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from evals.cases import JUDGE_PROMPT, PLANNER_PROMPT
from tests.support.env import OPSGATE_VARS, ROOT
from tests.support.evals import HOSTILE, run_eval
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.e2e

# A model-planned question (the rules tier hands it on), a refund the rules tier completes and
# an IT reset it completes: only the first may reach the model.
PICKED = ("COR-001", "COR-017", "COR-042")


def case_file(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "evals/golden/cases.yaml").read_text(encoding="utf-8"))
    data["cases"] = [c for c in data["cases"] if c["id"] in PICKED]
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def env_without_opsgate() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}


@pytest.mark.timeout(300)
def test_a_real_endpoint_plans_only_what_the_rules_tier_hands_on(
    tmp_path: Path, _model_server_process: ModelServer
) -> None:
    server = _model_server_process
    server.reset()
    # Given an endpoint that answers the question's planner prompt as a competent model does,
    # and judges as a second model, with keys in variables the options name
    question = yaml.safe_load(case_file(tmp_path).read_text())["cases"][0]
    assert question["id"] == "COR-001"
    server.script(
        {
            "match": [PLANNER_PROMPT, "91001"],
            "model": "planner-x",
            "times": -1,
            **question["model"]["plan"],
        },
        {
            "match": JUDGE_PROMPT,
            "model": "judge-y",
            "times": -1,
            "content": {"supported": True, "confidence": 0.9, "reasons": ["fine"]},
        },
    )
    env = {**env_without_opsgate(), **HOSTILE, "EVAL_KEY": "sk-eval-planner"}
    # When the eval runs the three cases against it
    proc = subprocess.run(
        [sys.executable, "-m", "app", "eval", str(case_file(tmp_path)),
         "--endpoint", server.url, "--model", "planner-x",
         "--judge-endpoint", server.url, "--judge-model", "judge-y",
         "--api-key-env", "EVAL_KEY", "--json", "--html", str(tmp_path / "r.html")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    # Then every case is correct and the report says what it ran with
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    [run] = report["runs"]
    assert run["name"] == "three" and run["all"]["correct"] == 3, run["wrong"]
    assert run["all"]["wrong_writes"] == 0
    meta = report["meta"]
    assert (meta["endpoint"], meta["model"]) == (server.url, "planner-x")
    assert (meta["judge_endpoint"], meta["judge_model"]) == (server.url, "judge-y")
    assert meta["prompt_version"].startswith("planner@")
    assert set(meta["policy_version"]) == {"support_refund", "invoice_exception", "it_request"}
    # And only the question reached the model, with the planner's key and model name
    planner = [r for r in server.requests() if PLANNER_PROMPT in json.dumps(r)]
    assert planner and all("91001" in json.dumps(r) for r in planner)
    assert {r["model"] for r in planner} == {"planner-x"}
    key = hashlib.sha256(b"Bearer sk-eval-planner").hexdigest()
    assert {r["headers"]["authorization_sha256"] for r in planner} == {key}
    # And the HTML report holds the run
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "planner-x" in page and "COR-042" in page


def test_endpoint_options_are_checked_before_anything_runs(tmp_path: Path) -> None:
    no_model = run_eval(tmp_path, "golden", "--endpoint", "http://127.0.0.1:9/v1")
    assert no_model.returncode == 2
    assert no_model.stderr.strip() == (
        "error: --endpoint needs --model (the model name the endpoint serves)"
    )
    not_url = run_eval(tmp_path, "golden", "--endpoint", "localhost:8080", "--model", "m")
    assert not_url.returncode == 2 and "is not an http(s) URL" in not_url.stderr
    compare = run_eval(tmp_path, "golden", "--compare", str(ROOT / "evals/baseline.json"))
    assert compare.returncode == 2 and "give --html" in compare.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("salesforce_organization_id: 00D5g000004XyZa\ncases:\n- {id: X-1}\n")
    refused = run_eval(tmp_path, str(bad))
    assert refused.returncode == 2
    assert "case X-1: id: case id 'X-1' is not three capitals" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.timeout(300)
def test_sigterm_stops_the_world_and_removes_its_home(tmp_path: Path) -> None:
    # Given an eval under way (its world's processes running, cases settling)
    env = {**env_without_opsgate(), **HOSTILE, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "eval", "golden", "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    homes: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        homes = list(tmp_path.glob("opsgate-eval-golden-*"))
        if homes and (homes[0] / "var" / "worker.log").exists():
            break
        time.sleep(0.2)
    assert homes, "the eval never built its world"
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children
    # When it is sent SIGTERM
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # Then it exits 143, its processes are gone and its home is removed
    assert proc.returncode == 143, err[-2000:]
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert not any(h.exists() for h in homes)
