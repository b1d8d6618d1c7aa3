"""app/jobs/celery_config.py: every process that publishes stamps its messages, the API's
outbox as much as a worker (the queue wait and the ids-only argsrepr depend on it)."""

from __future__ import annotations

import json
import subprocess
import sys

from app.jobs.celery_config import PUBLISHED_HEADER
from tests.support.env import ROOT

# A process that, like the API, imports only the publisher's side: no task modules, no
# telemetry hooks. It publishes a stage message to an in-memory broker and prints what the
# message carries.
PUBLISH_ONLY = """
import json, sys
from app.jobs import celery_config
app = celery_config.make_celery()
app.conf.broker_url = "memory://"
app.send_task("opsgate.plan", args=["0b7c9a8e-3c1d-4f52-9f0e-2a8a6b1c4d5e", "eve@example.com"],
              queue="plan")
with app.connection() as conn:
    message = conn.SimpleQueue("plan").get(timeout=5)
    loaded = sorted(m for m in sys.modules if m.startswith(("tasks", "app.telemetry")))
    print(json.dumps({"headers": message.headers, "loaded": loaded}))
"""


def test_a_publish_only_process_stamps_its_stage_messages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PUBLISH_ONLY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    headers = seen["headers"]
    assert isinstance(headers[PUBLISHED_HEADER], float)
    assert headers["argsrepr"] == "['0b7c9a8e-3c1d-4f52-9f0e-2a8a6b1c4d5e', '[redacted]']"
    assert seen["loaded"] == []  # neither the task modules nor the telemetry were needed
