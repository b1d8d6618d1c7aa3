"""Prometheus metrics computed from the database at scrape time, so every process of the
fleet is counted (per-process counters in Celery workers would each see only their share)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Escalation, Job, OutboxMessage, ToolCall


class FleetCollector(Collector):
    """Job, escalation, tool-call and outbox figures for the whole fleet."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "opsgate_jobs", "Jobs by workflow and status", labels=["workflow", "status"]
        )
        escs = GaugeMetricFamily(
            "opsgate_escalations", "Escalations by reason and status", labels=["reason", "status"]
        )
        calls = GaugeMetricFamily(
            "opsgate_tool_calls", "Tool calls by tool and outcome", labels=["tool", "outcome"]
        )
        pending = GaugeMetricFamily("opsgate_outbox_pending", "Stage messages not yet published")
        dead = GaugeMetricFamily(
            "opsgate_dead_letters",
            "Jobs failed because a stage message kept coming back (alert on > 0)",
        )
        with session_scope() as s:
            for wf, st, n in s.execute(
                select(Job.workflow, Job.status, func.count()).group_by(Job.workflow, Job.status)
            ):
                jobs.add_metric([wf, st], n)
            for reason, st, n in s.execute(
                select(Escalation.reason, Escalation.status, func.count()).group_by(
                    Escalation.reason, Escalation.status
                )
            ):
                escs.add_metric([reason, st], n)
            for tool, outcome, n in s.execute(
                select(ToolCall.tool, ToolCall.outcome, func.count()).group_by(
                    ToolCall.tool, ToolCall.outcome
                )
            ):
                calls.add_metric([tool, outcome], n)
            pending.add_metric(
                [], s.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None))) or 0
            )
            dead.add_metric(
                [],
                s.scalar(
                    select(func.count()).where(
                        Job.status == "failed", Job.status_reason.like("dead_letter%")
                    )
                )
                or 0,
            )
        yield from (jobs, escs, calls, pending, dead)
