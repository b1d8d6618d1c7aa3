"""app/reporting/kpis.py arithmetic and edge cases: percentiles, division by zero, empty windows,
the "all" column, the schema-adherence definition, the text forms; the SQL on embedded SQLite."""

from __future__ import annotations

import random
import statistics
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.reporting import html
from app.reporting import kpis as report
from app.reporting.kpis import DASH, Tally, kpis

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
SVG = "{http://www.w3.org/2000/svg}svg"


def data_of(*tallies: tuple[str, Tally], since: str | None = None) -> dict[str, Any]:
    """A report document built from tallies, as `build` assembles it."""
    merged = Tally()
    for _, t in tallies:
        merged.merge(t)
    per_workflow = [kpis(wf, t) for wf, t in tallies]
    return {
        "generated_at": "2026-01-01T00:00:00+00:00",
        "since": since,
        "rollout": {wf: {"stage": "live", "canary_percent": 0} for wf, _ in tallies},
        "workflows": per_workflow,
        "total": kpis(report.ALL, merged),
        "escalation_reasons": report.escalation_reasons(per_workflow),
        "shadow": [],
        "volumes": [],
    }


# --- percentiles ------------------------------------------------------------------------------


def test_percentile_of_nothing_is_none_and_of_one_value_is_that_value() -> None:
    assert report.percentile([], 50) is None and report.percentile([], 95) is None
    assert report.percentile([7.5], 50) == 7.5 and report.percentile([7.5], 95) == 7.5


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert report.percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert report.percentile([4, 1, 3, 2], 95) == pytest.approx(3.85)
    assert report.percentile([1, 2], 95) == pytest.approx(1.95)
    assert report.percentile([5, 1, 9], 0) == 1 and report.percentile([5, 1, 9], 100) == 9


def test_percentile_agrees_with_statistics_inclusive_quantiles() -> None:
    rng = random.Random(7)
    for n in (2, 3, 10, 101):
        values = [rng.expovariate(0.1) for _ in range(n)]
        cuts = statistics.quantiles(values, n=20, method="inclusive")
        assert report.percentile(values, 50) == pytest.approx(statistics.median(values))
        assert report.percentile(values, 95) == pytest.approx(cuts[18])


# --- division by zero and empty windows -------------------------------------------------------


def test_no_jobs_every_rate_is_none_and_shown_as_a_dash() -> None:
    k = kpis("support_refund", Tally())
    assert k["jobs"] == {"total": 0, "settled": 0, "completed": 0, "by_status": {}}
    assert k["cost"] == {"total_usd": "0.000000", "per_completed_usd": None, "model_calls": 0}
    assert k["escalation"]["rate"] is None
    assert k["tool_calls"]["success_rate"] is None
    assert k["retries"]["per_run"] is None
    assert k["schema"]["adherence"] is None
    assert k["time_to_done"] == {"completed": 0, "p50_s": None, "p95_s": None}
    assert k["shadow"]["agreement_rate"] is None
    _, rows = report.kpi_rows(data_of())
    cells = dict(rows)
    for label in (
        "cost per completed task",
        "escalation rate",
        "tool-call success",
        "retries per run",
        "schema adherence",
        "time to done p50",
        "time to done p95",
        "shadow agreement",
    ):
        assert cells[label] == [DASH], label
    assert cells["jobs"] == ["0"] and cells["model spend"] == ["$0.00"]


def test_no_completed_jobs_cost_per_task_and_time_to_done_are_dashes_spend_is_not() -> None:
    t = Tally(
        by_status=Counter(escalated=2, queued=1),
        escalated_settled=2,
        reasons=Counter(approval_required=2),
        spend=Decimal("0.0125"),
        model_calls=Counter({("small", "ok"): 2}),
    )
    k = kpis("support_refund", t)
    assert k["cost"]["total_usd"] == "0.012500" and k["cost"]["per_completed_usd"] is None
    assert k["time_to_done"]["p50_s"] is None
    # The queued job is not settled yet: it counts for neither side of the rate
    assert (k["escalation"]["escalated"], k["escalation"]["settled"]) == (2, 2)
    assert k["escalation"]["rate"] == 1.0
    cells = dict(report.kpi_rows(data_of(("support_refund", t)))[1])
    assert cells["cost per completed task"] == [DASH, DASH]
    assert cells["model spend"] == ["$0.0125", "$0.0125"]
    assert cells["time to done p95"] == [DASH, DASH]
    assert cells["escalation rate"] == ["100.0% (2/2)", "100.0% (2/2)"]


def test_fmt_ratio_divides_the_counts_and_dashes_zero_over_zero() -> None:
    assert report.fmt_ratio(0, 0) == DASH
    assert report.fmt_ratio(2, 3) == "66.7% (2/3)"
    assert report.fmt_ratio(0, 5) == "0.0% (0/5)"
    # From the counts, not from the rate already rounded to 4 digits (0.7895 -> 79.0%)
    assert report.fmt_ratio(15, 19) == "78.9% (15/19)"
    assert report.ratio(1, 0) is None and report.ratio(2, 3) == 0.6667


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, DASH),
        (0.0, "0.0s"),
        (4.24, "4.2s"),
        (192, "3m 12s"),
        (7500, "2h 05m"),
        (97200, "1d 3h"),
    ],
)
def test_fmt_duration(seconds: float | None, shown: str) -> None:
    assert report.fmt_duration(seconds) == shown


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (None, DASH),
        ("0.000000", "$0.00"),
        ("0.000427", "$0.000427"),
        ("0.0210", "$0.0210"),
        ("1234.5", "$1,234.50"),
    ],
)
def test_fmt_usd_keeps_the_precision_small_model_costs_need(amount: str | None, shown: str) -> None:
    assert report.fmt_usd(amount) == shown


def test_cost_per_completed_task_is_rounded_to_a_millionth() -> None:
    t = Tally(by_status=Counter(completed=3), spend=Decimal("0.001"))
    assert kpis("w", t)["cost"]["per_completed_usd"] == "0.000333"


# --- definitions ------------------------------------------------------------------------------


def test_schema_adherence_counts_answers_only_and_invalid_and_refused_against() -> None:
    t = Tally(
        model_calls=Counter(
            {
                ("small", "ok"): 6,
                ("small", "invalid"): 2,
                ("small", "refused"): 1,
                ("small", "unavailable"): 4,  # no answer: left out
                ("small", "error"): 1,  # the API refused the request: left out
                ("large", "ok"): 1,
            }
        ),
        cache_hits=5,  # replays of validated answers: left out
    )
    schema = kpis("w", t)["schema"]
    assert (schema["answered"], schema["ok"], schema["invalid"], schema["refused"]) == (10, 7, 2, 1)
    assert schema["no_answer"] == 5 and schema["cache_hits"] == 5
    assert schema["adherence"] == 0.7
    assert schema["by_tier"] == {
        "large": {"answered": 1, "ok": 1, "adherence": 1.0},
        "small": {"answered": 9, "ok": 6, "adherence": 0.6667},
    }
    assert kpis("w", t)["cost"]["model_calls"] == 20


def test_the_all_column_divides_the_merged_counts_not_the_averages() -> None:
    a = Tally(by_status=Counter(completed=1), tool_calls=Counter(ok=1), durations=[10.0])
    b = Tally(
        by_status=Counter(completed=3),
        tool_calls=Counter(ok=0, error=3),
        retries=4,
        durations=[1.0, 2.0, 3.0],
    )
    data = data_of(("a", a), ("b", b))
    total = data["total"]
    assert total["tool_calls"]["success_rate"] == 0.25  # 1/4, not the mean of 100% and 0%
    assert total["retries"]["per_run"] == 1.0
    assert total["time_to_done"]["p50_s"] == 2.5
    assert [k["workflow"] for k in data["workflows"]] == ["a", "b"]


def test_shadow_agreement_per_workflow_adds_the_tools() -> None:
    t = Tally(shadow=Counter(proposals=6, approved=3, edited=1, rejected=1, open=1))
    shadow = kpis("w", t)["shadow"]
    assert shadow["decided"] == 5 and shadow["agreement_rate"] == 0.6


def test_escalation_reasons_are_most_frequent_first_with_counts_per_workflow() -> None:
    data = data_of(
        ("a", Tally(reasons=Counter(refused=1, approval_required=2))),
        ("b", Tally(reasons=Counter(approval_required=1, verification_failed=3))),
    )
    assert data["escalation_reasons"] == [
        {"reason": "approval_required", "total": 3, "by_workflow": {"a": 2, "b": 1}},
        {"reason": "verification_failed", "total": 3, "by_workflow": {"b": 3}},
        {"reason": "refused", "total": 1, "by_workflow": {"a": 1}},
    ]
    head, rows = report.reason_rows(data)
    assert head == ["reason", "a", "b", "all"]
    assert rows[0] == ["approval_required", "2", "1", "3"]


# --- HTML -------------------------------------------------------------------------------------


def test_html_of_an_empty_window_is_well_formed_with_a_chart_per_family() -> None:
    page = html.render(data_of(since="2026-01-01T00:00:00+00:00"))
    root = ET.fromstring(page)
    assert {svg.get("data-kpi") for svg in root.iter(SVG)} == FAMILIES
    assert "no data in the window" in page and "<script" not in page
    assert "jobs created since 2026-01-01 00:00:00 UTC" in page


def test_html_escapes_names_and_draws_no_bar_for_undefined_values() -> None:
    odd = Tally(
        by_status=Counter(completed=1, escalated=1),
        escalated_settled=1,
        reasons=Counter({"<reason & co>": 1}),
        tool_calls=Counter(ok=2),
        durations=[3.0],
    )
    page = html.render(data_of(("wf<&>", odd)))
    root = ET.fromstring(page)  # would fail on an unescaped name
    text = "".join(root.itertext())
    assert "wf<&>" in text and "<reason & co>" in text
    shadow = next(s for s in root.iter(SVG) if s.get("data-kpi") == "shadow")
    assert list(shadow.iter("{http://www.w3.org/2000/svg}rect")) == []
    assert DASH in "".join(shadow.itertext())
    tools = next(s for s in root.iter(SVG) if s.get("data-kpi") == "tool_calls")
    assert "100.0% (2/2)" in "".join(tools.itertext())


# --- the SQL, on embedded SQLite ---------------------------------------------------------------


def test_build_counts_the_rows_on_sqlite_and_honours_since(
    new_job: Callable[..., str], walk: Callable[..., None]
) -> None:
    from app.core.db import session_scope
    from app.models import Escalation, Job, ModelCall, ToolCall

    done, stuck, old = new_job(4821), new_job(4822), new_job(4823)
    with session_scope() as s:
        job = s.get(Job, done)
        assert job is not None
        walk(s, job, "planned", "ready", "executed", "completed")
        job.retries = 2
        stuck_job = s.get(Job, stuck)
        assert stuck_job is not None
        walk(s, stuck_job, "planned", "ready", "escalated")
        s.add(
            Escalation(job_id=stuck, reason="approval_required", detail="", evidence={}, stage="x")
        )
        for job_id, outcome, attempt in ((done, "ok", 1), (done, "error", 1), (done, "ok", 2)):
            s.add(
                ToolCall(
                    job_id=job_id,
                    stage="execute",
                    tool="stripe.refund",
                    system="stripe",
                    service_identity="svc",
                    request={},
                    outcome=outcome,
                    latency_ms=1.0,
                    attempt=attempt,
                )
            )
        for job_id, outcome, cost in ((done, "ok", "0.0010"), (stuck, "invalid", "0.0005")):
            s.add(
                ModelCall(
                    job_id=job_id,
                    stage="plan",
                    tier="small",
                    model="m",
                    prompt_version="p",
                    passages=[],
                    router=[],
                    request={},
                    response={},
                    outcome=outcome,
                    cost_usd=Decimal(cost),
                    latency_ms=1.0,
                )
            )
        old_job = s.get(Job, old)
        assert old_job is not None
        old_job.created_at = datetime.now(UTC) - timedelta(days=10)
        s.commit()
    with session_scope() as s:
        everything = report.build(s)
        recent = report.build(s, datetime.now(UTC) - timedelta(days=7))
    (k,) = everything["workflows"]
    assert k["jobs"]["by_status"] == {"completed": 1, "escalated": 1, "queued": 1}
    assert (k["cost"]["total_usd"], k["cost"]["per_completed_usd"]) == ("0.001500", "0.001500")
    assert (k["escalation"]["rate"], k["escalation"]["by_reason"]) == (
        0.5,
        {"approval_required": 1},
    )
    assert (k["tool_calls"]["total"], k["tool_calls"]["ok"], k["tool_calls"]["retried"]) == (
        3,
        2,
        1,
    )
    assert k["retries"]["per_run"] == pytest.approx(2 / 3, abs=1e-3)
    assert (k["schema"]["answered"], k["schema"]["adherence"]) == (2, 0.5)
    assert k["time_to_done"]["completed"] == 1 and k["time_to_done"]["p50_s"] >= 0
    assert everything["volumes"] == [
        {"workflow": "support_refund", "total": 3, "by_status": k["jobs"]["by_status"]}
    ]
    # The old job is outside the last 7 days
    assert recent["workflows"][0]["jobs"]["by_status"] == {"completed": 1, "escalated": 1}
    assert recent["since"] is not None
