"""Child processes of the `opsgate` command (workers, beat, the API, the sandbox) for the
demo and the eval worlds: start one in its own session, wait for it to answer, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.errors import ServiceUnavailable


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`opsgate ARGS` as a child in its own session, its output appended to `log_path`."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=os.getcwd(),
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL to the child's group if it lingers past `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish the current tasks
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_http(
    url: str, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30.0
) -> None:
    """Wait until `url` answers 200; ServiceUnavailable naming `log` if `proc` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"{what} exited at start; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} did not answer at {url}; see {log}")
