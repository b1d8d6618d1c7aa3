"""A worker whose consumer dies on an unrecoverable error comes back by itself.

The trigger is injected (the kombu race seen under Redis restarts is not reproducible on
demand); what follows is the real path: Celery logs "Unrecoverable error", stops with
EX_FAILURE, and `opsgate worker` re-executes itself with the same pid and node name.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

import pytest
from celery import Celery

from tests.support.env import ROOT
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

# The first life of the worker gets a consumer loop that raises; later lives are untouched.
FIRST_LIFE_BREAKS = """
import os, sys
if not os.environ.get("OPSGATE_WORKER_RESTARTS"):
    from celery.worker import loops

    def broken(*args, **kwargs):
        raise RuntimeError("injected consumer failure")

    loops.asynloop = loops.synloop = broken
from app.cli import main
sys.argv = ["opsgate", *sys.argv[1:]]
main()
"""


def test_an_unrecoverable_consumer_error_restarts_the_worker_in_place(pg_env, tmp_path):
    node = f"restart-{secrets.token_hex(3)}@localhost"
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", FIRST_LIFE_BREAKS, "worker", "--hostname", node, "-c", "1"],
        env=dict(os.environ),
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    control = Celery(broker=pg_env["OPSGATE_REDIS_URL"])
    try:
        # Then the worker answers pings again, in the same process, after one restart
        try:
            wait_for(
                lambda: control.control.ping(destination=[node], timeout=0.5),
                timeout=60,
                what="the worker to answer after its restart",
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; its log:\n{log.read_text(errors='replace')[-3000:]}"
            ) from None
        out = log.read_text(errors="replace")
        assert "injected consumer failure" in out
        assert '"worker.restarting"' in out
        assert proc.poll() is None
        # And a requested shutdown is not mistaken for a failure: it exits 0, no restart
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert log.read_text(errors="replace").count('"worker.restarting"') == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
