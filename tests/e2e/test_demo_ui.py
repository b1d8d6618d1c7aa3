"""`opsgate demo --ui`: after the table the fleet stays up with the API serving the reviewer
console, until Ctrl-C stops it all and revokes the run's keys."""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.support.demo import read_json_document, start_demo

pytestmark = pytest.mark.e2e


def test_demo_ui_serves_the_queue_until_ctrl_c(clean_env: Path) -> None:
    # Given the demo run with --ui --json in an empty directory
    proc = start_demo(clean_env, "--ui", "--json")
    children: list[psutil.Process] = []
    try:
        result = read_json_document(proc, timeout=600)
        assert not result["timed_out"]
        ui = result["ui"]
        api = "http://" + urlsplit(ui["url"]).netloc
        assert ui["url"] == f"{api}/ui/escalations"
        assert ui["sign_in_url"] == f"{api}/ui/sign-in"
        # Then, after the table, the API answers on the printed address with the fleet running
        children = psutil.Process(proc.pid).children(recursive=True)
        assert httpx.get(f"{api}/healthz", timeout=10).status_code == 200
        reviewer = {"Authorization": f"Bearer {ui['reviewer_key']}"}
        queue = httpx.get(f"{api}/v1/escalations", headers=reviewer, timeout=10)
        assert queue.status_code == 200, queue.text
        escalated = {r["job_id"] for r in result["rows"] if r["status"] == "escalated"}
        assert escalated and escalated == {e["job_id"] for e in queue.json()}
        # And the reviewer is not the demo jobs' requester: a decision goes through
        first = queue.json()[0]
        decided = httpx.post(
            f"{api}/v1/escalations/{first['id']}/decision",
            json={"decision": "reject", "reason_code": "wrong_action", "note": "demo"},
            headers=reviewer,
            timeout=30,
        )
        assert decided.status_code == 200, decided.text
        # When the user presses Ctrl-C
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    errors = (clean_env / "demo.err").read_text()
    assert "Traceback" not in errors, errors
    # Then the API, the worker and the sandbox are gone, and so is the embedded redis-server
    assert len(children) >= 3
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{api}/healthz", timeout=2)
    assert not (clean_env / "var" / "redis.pid").exists()
    # And the run's keys are revoked: the reviewer key would get 401
    from app.core.db import session_scope
    from app.errors import Unauthorized
    from app.identity import apikeys

    with session_scope() as session:
        revoked = {k["name"]: k["revoked_at"] for k in apikeys.listing(session)}
        with pytest.raises(Unauthorized):
            apikeys.authenticate(session, f"Bearer {ui['reviewer_key']}")
    run = result["run_id"]
    assert revoked[f"demo-reviewer-{run}"] and revoked[f"demo-admin-{run}"]
