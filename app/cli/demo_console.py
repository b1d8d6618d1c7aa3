"""`opsgate demo --ui`: the reviewer console on the demo's running fleet. The API joins the fleet
with its environment, a reviewer and an admin key are made for the run (revoked on exit), and
the demo waits for Ctrl-C (or SIGTERM) to stop it all."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from app.cli.demo_fleet import Fleet
from app.core.db import session_scope
from app.core.processes import free_port, spawn, stop_process, wait_http
from app.errors import ServiceUnavailable
from app.identity import apikeys
from app.settings import Settings, cli_actor

HINT = (
    "open the URL, sign in with the reviewer key, decide the demo's escalations; "
    "Ctrl-C stops the API, worker and sandbox"
)


@dataclass(frozen=True)
class ReviewerConsole:
    """The API serving the console: where it answers, the run's keys, its process and log."""

    base_url: str
    reviewer_key: str
    admin_key: str
    api: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        """The queue, the console's first page."""
        return f"{self.base_url}/ui/escalations"

    @property
    def sign_in_url(self) -> str:
        """Where the reviewer key is entered."""
        return f"{self.base_url}/ui/sign-in"

    def as_json(self) -> dict[str, str]:
        """Plain data for --json."""
        return {
            "url": self.url,
            "sign_in_url": self.sign_in_url,
            "reviewer_key": self.reviewer_key,
            "admin_key": self.admin_key,
        }


def key_names(run_id: str) -> dict[str, str]:
    """The run's keys by role; named for the run, so no earlier run's key is in the way."""
    return {"reviewer": f"demo-reviewer-{run_id}", "admin": f"demo-admin-{run_id}"}


def _browsable(host: str) -> str:
    """The host part of a URL that reaches a server bound to `host`."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def serving(
    settings: Settings, fleet: Fleet, run_id: str, host: str, port: int | None
) -> Iterator[ReviewerConsole]:
    """`opsgate api` on `host`:`port` (default: a free port) with the fleet's environment, and
    the run's reviewer and admin keys; on exit the API stops and the keys are revoked."""
    names = key_names(run_id)
    with session_scope() as session:
        keys = {
            role: apikeys.create(session, name, role, created_by=cli_actor())
            for role, name in names.items()
        }
        session.commit()
    try:
        port = port or free_port()
        log = settings.var_dir / "demo-api.log"
        api = spawn(["api", "--host", host, "--port", str(port)], fleet.env, log)
        try:
            base_url = f"http://{_browsable(host)}:{port}"
            wait_http(f"{base_url}/healthz", api, "the API", log)
            yield ReviewerConsole(base_url, keys["reviewer"], keys["admin"], api, log)
        finally:
            stop_process(api)
    finally:
        with session_scope() as session:
            for name in names.values():
                apikeys.revoke(session, name)
            session.commit()


class StopSignals:
    """SIGINT and SIGTERM while the console may run. Until `wait` they interrupt as Ctrl-C
    does; from then the first one ends the wait and later ones are ignored, so the API, the
    worker and the sandbox stop cleanly whatever else arrives."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._waiting = False
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self._waiting:
            raise KeyboardInterrupt
        self._stop.set()

    def wait(self, console: ReviewerConsole) -> None:
        """Until SIGINT or SIGTERM; ServiceUnavailable if the API exits first."""
        self._waiting = True
        while not self._stop.wait(0.5):
            if console.api.poll() is not None:
                raise ServiceUnavailable(f"the API exited; see {console.log}")
