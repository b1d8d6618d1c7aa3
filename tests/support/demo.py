"""`opsgate demo` as a user runs it: a real subprocess on the embedded defaults, in a directory
of its own, and the outcomes the sample inbox should come to."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from tests.support.env import OPSGATE_VARS

EXPECTED = {
    "01-clean-refund.json": ("completed", ""),
    "02-clean-refund-usd.json": ("completed", ""),
    "03-over-autonomy-cap.json": ("escalated", "approval_required"),
    "04-wrong-currency.json": ("escalated", "verification_failed"),
    "05-already-refunded.json": ("escalated", "verification_failed"),
    "06-not-a-refund.json": ("escalated", "no_model"),
    "07-clean-refund-eur.json": ("completed", ""),
    "08-someone-elses-charge.json": ("escalated", "verification_failed"),
    "09-duplicate-delivery.json": ("completed", ""),
    "10-invoice-amount-off-po.json": ("completed", ""),
    "11-invoice-clean-approval.json": ("escalated", "approval_required"),
    "12-invoice-vendor-not-allowed.json": ("completed", ""),
    "13-invoice-already-paid.json": ("escalated", "planner_requested"),
    "14-it-own-password-reset.json": ("completed", ""),
    "15-it-vpn-access.json": ("completed", ""),
    "16-it-admin-access.json": ("escalated", "approval_required"),
    "17-it-reset-someone-else.json": ("escalated", "verification_failed"),
    "18-it-offboarding.json": ("escalated", "approval_required"),
}


def demo_env() -> dict[str, str]:
    """The test's environment without any OPSGATE_* (or model) variable: embedded defaults."""
    return {k: v for k, v in os.environ.items() if k not in OPSGATE_VARS}


def run_demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`opsgate demo ARGS` in `home`, to the end."""
    return subprocess.run(
        [sys.executable, "-m", "app", "demo", *args],
        cwd=home,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_demo(home: Path, *args: str) -> subprocess.Popen[str]:
    """`opsgate demo ARGS` in `home`, left running: stdout a pipe, stderr in home/demo.err."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "demo", *args],
        cwd=home,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=(home / "demo.err").open("w"),
        text=True,
    )


def read_json_document(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The first JSON document `proc` prints (`--json` prints it indented, ending in a line
    `}`), read as it comes while the process goes on running."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    assert proc.stdout is not None
    threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
    text = ""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no JSON document within {timeout}s; so far: {text!r}") from None
        if line is None:
            raise AssertionError(f"demo exited ({proc.wait()}) before a JSON document: {text!r}")
        text += line
        if line.rstrip("\n") == "}":
            document: dict[str, Any] = json.loads(text)
            return document
