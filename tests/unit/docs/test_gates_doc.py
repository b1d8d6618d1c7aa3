"""docs/architecture.md lists the gates of app/controls/gates.py, in their order."""

from __future__ import annotations

from app.controls import gates
from tests.support.env import ROOT


def _documented() -> list[tuple[str, str, str]]:
    page = (ROOT / "docs" / "architecture.md").read_text()
    block = page.split("<!-- gates:", 1)[1].split("<!-- /gates -->", 1)[0]
    rows = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            rows.append((cells[1].strip("`"), cells[2], cells[3]))
    return rows


def test_the_docs_list_every_gate_in_the_codes_order() -> None:
    where = {id(g): "execute stage" for g in gates.BEFORE_CALL} | {
        id(g): "call recorder" for g in gates.AT_CALL
    }
    in_code = [(g.name, where[id(g)], g.reads) for g in gates.GATES]
    assert _documented() == in_code


def test_the_stage_gates_run_before_the_gates_at_the_call() -> None:
    assert gates.GATES == gates.BEFORE_CALL + gates.AT_CALL
    assert [g.name for g in gates.GATES] == [
        "policy",
        "approval",
        "daily_caps",
        "kill_switch",
        "rate_limit",
        "breaker",
    ]
