"""`opsgate report` on real runs: jobs through a real worker, PostgreSQL, Redis, the sandbox and
the scripted model server; the KPIs it prints checked against the rows, counted here apart."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.intake import submissions
from app.jobs import lifecycle
from app.models import Escalation, Job, JobEvent, ModelCall, ToolCall, as_utc
from tests.support.env import ROOT, reset_process_state
from tests.support.model_server import ModelServer
from tests.support.processes import wait_for
from tests.support.redis_server import RedisServer
from tests.support.sandbox import GROUNDED_TICKET, Sandbox

pytestmark = pytest.mark.integration

SETTLED = lifecycle.TERMINAL | {lifecycle.ESCALATED}
INBOX = ROOT / "examples" / "inbox"
SVG = "{http://www.w3.org/2000/svg}svg"
FAMILIES = {
    "jobs",
    "cost",
    "escalation",
    "escalation_reasons",
    "tool_calls",
    "retries",
    "schema",
    "time_to_done",
    "shadow",
}


# --- helpers ----------------------------------------------------------------------------------


def submit_example(name: str, tag: str) -> str:
    sub = json.loads((INBOX / name).read_text())
    sub["delivery_id"] = f"{sub['delivery_id']}-{tag}"
    return submissions.submit(sub, submitted_by="test")[0]


def submit_ticket(ticket: int, user: int, delivery: str) -> str:
    return submissions.submit(
        {
            "workflow": "support_refund",
            "source": "zendesk",
            "external_id": str(ticket),
            "delivery_id": delivery,
            "requester": f"zendesk-user:{user}",
            "input": {"ticket_id": ticket},
        },
        submitted_by="test",
    )[0]


def settle(job_id: str) -> str:
    def status() -> str | None:
        with session_scope() as s:
            job = s.get(Job, job_id)
            assert job is not None
            return job.status if job.status in SETTLED else None

    return str(wait_for(status, timeout=90, what=f"job {job_id} to settle"))


def opsgate_report(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "report", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def report_json(*args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(opsgate_report("--json", *args).stdout)
    return data


def p95(values: list[float]) -> float:
    # statistics' "inclusive" quantiles interpolate between closest ranks, as the report does
    return (
        values[0]
        if len(values) == 1
        else statistics.quantiles(values, n=20, method="inclusive")[18]
    )


def expected(since: datetime | None = None) -> dict[str, dict[str, Any]]:
    """The KPIs per workflow, counted here from the rows, apart from app.reporting.kpis."""
    out: dict[str, dict[str, Any]] = {}
    with session_scope() as s:
        all_jobs = [
            j for j in s.scalars(select(Job)) if since is None or as_utc(j.created_at) >= since
        ]
        for wf in sorted({j.workflow for j in all_jobs}):
            js = [j for j in all_jobs if j.workflow == wf]
            ids = {j.id for j in js}
            settled = {j.id for j in js if j.status in SETTLED}
            completed = [j for j in js if j.status == lifecycle.COMPLETED]
            escs = [
                e
                for e in s.scalars(select(Escalation).where(Escalation.job_id.in_(ids)))
                if e.reason != "shadow_proposal"
            ]
            tcs = list(s.scalars(select(ToolCall).where(ToolCall.job_id.in_(ids))))
            mcs = list(s.scalars(select(ModelCall).where(ModelCall.job_id.in_(ids))))
            # answers that came back from a model (not the cache): ok, invalid or refused
            answered = [
                m for m in mcs if not m.cache_hit and m.outcome in ("ok", "invalid", "refused")
            ]
            durations: list[float] = []
            for j in completed:
                done = s.scalars(
                    select(JobEvent.at).where(
                        JobEvent.job_id == j.id, JobEvent.to_status == "completed"
                    )
                ).one()
                start, end = as_utc(j.created_at), as_utc(done)
                assert start is not None and end is not None
                durations.append((end - start).total_seconds())
            spend = sum((m.cost_usd for m in mcs), Decimal(0))
            reasons: dict[str, int] = {}
            for e in escs:
                reasons[e.reason] = reasons.get(e.reason, 0) + 1
            out[wf] = {
                "jobs": len(js),
                "by_status": {st: sum(j.status == st for j in js) for st in {j.status for j in js}},
                "completed": len(completed),
                "settled": len(settled),
                "spend": spend,
                "escalated": len({e.job_id for e in escs} & settled),
                "reasons": reasons,
                "tool_calls": len(tcs),
                "tool_ok": sum(t.outcome == "ok" for t in tcs),
                "tool_retried": sum(t.attempt > 1 for t in tcs),
                "retries": sum(j.retries for j in js),
                "answered": len(answered),
                "adherent": sum(m.outcome == "ok" for m in answered),
                "durations": durations,
            }
    return out


def check_kpis(got: dict[str, Any], exp: dict[str, Any]) -> None:
    """One workflow's KPIs as the report printed them against the independent count."""
    assert got["jobs"]["total"] == exp["jobs"]
    assert got["jobs"]["by_status"] == exp["by_status"]
    assert got["jobs"]["completed"] == exp["completed"]
    # cost per completed task
    assert Decimal(got["cost"]["total_usd"]) == exp["spend"].quantize(Decimal("0.000001"))
    if exp["completed"]:
        per_task = Decimal(got["cost"]["per_completed_usd"])
        assert abs(per_task - exp["spend"] / exp["completed"]) <= Decimal("0.0000005")
    else:
        assert got["cost"]["per_completed_usd"] is None
    # escalation rate and reasons
    esc = got["escalation"]
    assert (esc["escalated"], esc["settled"]) == (exp["escalated"], exp["settled"])
    assert esc["rate"] == pytest.approx(exp["escalated"] / exp["settled"], abs=1e-4)
    assert esc["by_reason"] == exp["reasons"]
    # tool-call success rate
    tc = got["tool_calls"]
    assert (tc["total"], tc["ok"], tc["retried"]) == (
        exp["tool_calls"],
        exp["tool_ok"],
        exp["tool_retried"],
    )
    if exp["tool_calls"]:
        assert tc["success_rate"] == pytest.approx(exp["tool_ok"] / exp["tool_calls"], abs=1e-4)
    # retries per run
    assert got["retries"]["total"] == exp["retries"]
    assert got["retries"]["per_run"] == pytest.approx(exp["retries"] / exp["jobs"], abs=1e-3)
    # schema adherence
    sc = got["schema"]
    assert (sc["answered"], sc["ok"]) == (exp["answered"], exp["adherent"])
    if exp["answered"]:
        assert sc["adherence"] == pytest.approx(exp["adherent"] / exp["answered"], abs=1e-4)
    else:
        assert sc["adherence"] is None
    # time to done
    ttd = got["time_to_done"]
    assert ttd["completed"] == len(exp["durations"])
    if exp["durations"]:
        assert ttd["p50_s"] == pytest.approx(statistics.median(exp["durations"]), abs=1e-3)
        assert ttd["p95_s"] == pytest.approx(p95(exp["durations"]), abs=1e-3)
    else:
        assert ttd["p50_s"] is None and ttd["p95_s"] is None


def check_report(data: dict[str, Any], exp: dict[str, dict[str, Any]]) -> None:
    assert [k["workflow"] for k in data["workflows"]] == sorted(exp)
    for k in data["workflows"]:
        check_kpis(k, exp[k["workflow"]])
    # The "all" column is the same arithmetic over every workflow's rows
    counts = ("jobs", "completed", "settled", "escalated", "tool_calls", "tool_ok")
    counts += ("tool_retried", "retries", "answered", "adherent")
    total: dict[str, Any] = {key: sum(e[key] for e in exp.values()) for key in counts}
    total["spend"] = sum((e["spend"] for e in exp.values()), Decimal(0))
    total["durations"] = [d for e in exp.values() for d in e["durations"]]
    for part in ("by_status", "reasons"):
        merged: dict[str, int] = {}
        for e in exp.values():
            for key, n in e[part].items():
                merged[key] = merged.get(key, 0) + n
        total[part] = merged
    check_kpis(data["total"], total)


def plan_for(args: dict[str, Any], ticket: int) -> dict[str, Any]:
    return {
        "workflow": "support_refund",
        "summary": f"refund for ticket {ticket}",
        "confidence": 0.93,
        "steps": [
            {
                "tool": "stripe.refund",
                "args": args,
                "rationale": "as the ticket asks",
                "evidence": [f"ticket:{ticket}", "policy:refunds#eligibility"],
            }
        ],
        "escalate": None,
    }


class _Tags(HTMLParser):
    """Checks that every element that must close does, in order."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "line", "path", "circle"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.svgs += tag == "svg"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def parse_html(path: Path) -> ET.Element:
    text = path.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    tags.close()
    assert tags.stack == [] and tags.svgs >= len(FAMILIES)
    # Self-contained: nothing fetched, nothing run
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text
    return ET.fromstring(text)


# --- the tests --------------------------------------------------------------------------------


@pytest.fixture
def private_redis(pg_env: Any, own_redis: RedisServer, monkeypatch: Any) -> str:
    """A Redis of this test's own: a test session running alongside on the shared server's
    database cannot consume this test's stage messages."""
    monkeypatch.setenv("OPSGATE_REDIS_URL", own_redis.url)
    reset_process_state()
    return own_redis.url


def test_the_kpis_of_real_runs_match_the_rows(
    private_redis: str,
    model_server: ModelServer,
    sandbox: Sandbox,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    start_worker()
    # Given rules-planned jobs in three workflows, some completing and some escalating, with
    # Stripe failing its first request (one retry)
    httpx.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"system": "stripe", "error_rate": 1.0, "error_status": 503, "count": 1},
        timeout=10,
    ).raise_for_status()
    first = [
        submit_example(name, "kpi")
        for name in (
            "01-clean-refund.json",
            "03-over-autonomy-cap.json",
            "10-invoice-amount-off-po.json",
            "11-invoice-clean-approval.json",
            "14-it-own-password-reset.json",
            "17-it-reset-someone-else.json",
        )
    ]
    outcomes = [settle(j) for j in first]
    assert outcomes == ["completed", "escalated"] * 3
    time.sleep(0.05)
    cut = datetime.now(UTC)
    time.sleep(0.05)
    # And later, model-planned jobs: one whose first answer is invalid and then repaired (it
    # completes), one the model refuses (it escalates)
    model_server.script(
        {"match": "ch_1003", "content": "a refund seems fair"},
        {
            "match": "ch_1003",
            "content": plan_for(
                {
                    "charge_id": "ch_1003",
                    "amount": 3000,
                    "currency": "usd",
                    "reason": "requested_by_customer",
                },
                GROUNDED_TICKET["id"],
            ),
            "usage": {"prompt_tokens": 2100, "completion_tokens": 180},
        },
        {
            "match": "opsgate soft check",
            "content": {"supported": True, "confidence": 0.93, "reasons": ["as asked"]},
            "usage": {"prompt_tokens": 900, "completion_tokens": 40},
        },
        {"match": "reset my password", "refusal": "I can't help with that."},
    )
    sandbox.add_tickets(GROUNDED_TICKET)
    second = [submit_ticket(GROUNDED_TICKET["id"], 103, "kpi-model-1")]
    assert settle(second[0]) == "completed"
    second.append(submit_ticket(4826, 106, "kpi-model-2"))
    assert settle(second[1]) == "escalated"

    # When the report is asked for all time, as JSON
    data = report_json()
    # Then every KPI equals what the rows say
    exp = expected()
    check_report(data, exp)
    refund = next(k for k in data["workflows"] if k["workflow"] == "support_refund")
    # (and the run held what the KPIs are about: spend, retries, non-adherent answers)
    assert Decimal(refund["cost"]["total_usd"]) > 0
    assert data["total"]["retries"]["total"] >= 1 and data["total"]["tool_calls"]["retried"] >= 1
    assert refund["schema"]["invalid"] == 1 and refund["schema"]["refused"] == 1
    assert refund["schema"]["adherence"] == pytest.approx(2 / 4)
    assert set(data["total"]["escalation"]["by_reason"]) >= {
        "approval_required",
        "verification_failed",
        "refused",
    }
    assert data["shadow"] == [] and refund["shadow"]["agreement_rate"] is None

    # When it is asked for the jobs since the cut (an ISO datetime)
    since = report_json("--since", cut.isoformat().replace("+00:00", "Z"))
    # Then only the later jobs count
    assert since["since"] == cut.isoformat()
    assert [k["workflow"] for k in since["workflows"]] == ["support_refund"]
    assert since["total"]["jobs"]["total"] == 2
    check_report(since, expected(cut))
    # And a relative window covering the whole run counts everything
    recent = report_json("--since", "1h")
    assert recent["workflows"] == data["workflows"]
    # And a date in the past is midnight UTC of that day
    assert report_json("--since", "2000-01-01")["since"] == "2000-01-01T00:00:00+00:00"

    # When the terminal table is asked for
    shown = opsgate_report().stdout
    # Then it names each KPI, each workflow and the escalation reasons, with the numbers
    for label in (
        "cost per completed task",
        "escalation rate",
        "tool-call success",
        "retries per run",
        "schema adherence",
        "time to done p50",
        "time to done p95",
        "shadow agreement",
        "Escalations by reason",
        "invoice_exception",
        "it_request",
        "support_refund",
        "approval_required",
    ):
        assert label in shown, label
    esc = refund["escalation"]
    assert f"{esc['rate']:.1%} ({esc['escalated']}/{esc['settled']})" in shown
    assert "50.0% (2/4)" in shown  # the refund workflow's schema adherence

    # When the HTML file is asked for
    page = tmp_path / "kpis.html"
    done = opsgate_report("--since", "7d", "--html", str(page))
    assert f"HTML report written to {page}" in done.stdout
    # Then it is well-formed, self-contained, with one chart per KPI family
    root = parse_html(page)
    charts = {svg.get("data-kpi") for svg in root.iter(SVG)}
    assert charts >= FAMILIES
    text = "".join(root.itertext())
    assert "50.0% (2/4)" in text and "support_refund" in text
    bars = [el for el in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert len(bars) > len(FAMILIES)


def test_a_bad_since_is_one_line_and_exit_2(pg_env: Any) -> None:
    done = opsgate_report("--since", "last tuesday", check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --since 'last tuesday'")


def test_an_empty_window_prints_dashes_not_errors(pg_env: Any, tmp_path: Path) -> None:
    shown = opsgate_report("--since", "24h", "--html", str(tmp_path / "empty.html")).stdout
    assert "no jobs created in the window" in shown
    assert "cost per completed task" in shown and "—" in shown
    root = parse_html(tmp_path / "empty.html")
    assert {svg.get("data-kpi") for svg in root.iter(SVG)} >= FAMILIES
    data = report_json()
    assert data["workflows"] == [] and data["total"]["cost"]["per_completed_usd"] is None


# --- shadow mode --------------------------------------------------------------------------------


def shadow_config(tmp_path: Path, monkeypatch: Any) -> None:
    import shutil

    import yaml

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    policy = yaml.safe_load((config / "policy.yaml").read_text())
    policy["workflows"]["support_refund"]["stage"] = "shadow"
    (config / "policy.yaml").write_text(yaml.safe_dump(policy))
    monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(config))
    reset_process_state()


def open_proposal(job_id: str) -> Escalation | None:
    with session_scope() as s:
        return s.scalars(
            select(Escalation).where(Escalation.job_id == job_id, Escalation.status == "open")
        ).one_or_none()


def decide(esc_id: int, **body: Any) -> None:
    from app.human import decisions

    with session_scope() as s:
        esc = s.get(Escalation, esc_id)
        assert esc is not None
        decisions.decide(s, esc, decisions.Decision(**body), "key:rev")
        s.commit()


def test_shadow_agreement_per_workflow_and_shadow_proposals_are_not_escalations(
    private_redis: str, sandbox: Sandbox, start_worker: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from app.jobs import outbox

    shadow_config(tmp_path, monkeypatch)
    start_worker()
    # Given two refund jobs proposed in shadow
    agreed, disagreed = submit_ticket(4821, 101, "kpi-sh-1"), submit_ticket(4822, 102, "kpi-sh-2")
    assert [settle(agreed), settle(disagreed)] == ["escalated", "escalated"]
    # When a reviewer executes one refund as proposed and rejects the other
    first = open_proposal(agreed)
    assert first is not None and first.reason == "shadow_proposal"
    decide(first.id, decision="approve")
    outbox.publish_for_job(agreed)
    wait_for(
        lambda: (e := open_proposal(agreed)) is not None and e.id != first.id,
        timeout=60,
        what="the next proposal",
    )
    rejected = open_proposal(disagreed)
    assert rejected is not None
    decide(rejected.id, decision="reject", reason_code="wrong_amount")
    # Then the workflow's agreement is 1 of 2 decided, with the next proposal open
    data = report_json()
    (refund,) = data["workflows"]
    assert refund["shadow"] == {
        "proposals": 3,
        "approved": 1,
        "edited": 0,
        "rejected": 1,
        "open": 1,
        "decided": 2,
        "agreement_rate": 0.5,
    }
    # And the per-tool rows add up to it
    assert sum(r["proposals"] for r in data["shadow"]) == 3
    # And proposals are not counted as escalations: both jobs settled, none escalated
    assert refund["escalation"] == {"escalated": 0, "settled": 2, "rate": 0.0, "by_reason": {}}
    assert refund["jobs"]["by_status"] == {"escalated": 1, "rejected": 1}
    shown = opsgate_report().stdout
    assert "50.0% (1/2)" in shown and "Shadow-mode agreement per tool" in shown
    assert "shadow" in shown  # the rollout stage row
