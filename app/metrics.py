"""Prometheus metrics computed from the database at scrape time, so every process of the
fleet is counted (per-process counters in Celery workers would each see only their share)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Escalation, Job, ModelCall, OutboxMessage, ToolCall


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
        incidents = GaugeMetricFamily(
            "opsgate_incidents",
            "Jobs whose write a read-back did not confirm (outcome_mismatch; alert on > 0)",
        )
        model_calls = GaugeMetricFamily(
            "opsgate_model_calls",
            "Model calls by tier, model and outcome (cache hits counted apart)",
            labels=["tier", "model", "outcome", "cache_hit"],
        )
        model_cost = GaugeMetricFamily(
            "opsgate_model_cost_usd", "Model spend so far by workflow, USD", labels=["workflow"]
        )
        per_task = GaugeMetricFamily(
            "opsgate_cost_per_completed_task_usd",
            "Model spend of completed jobs divided by their number, by workflow",
            labels=["workflow"],
        )
        with session_scope() as s:
            for tier, model, outcome, hit, n in s.execute(
                select(
                    ModelCall.tier,
                    ModelCall.model,
                    ModelCall.outcome,
                    ModelCall.cache_hit,
                    func.count(),
                ).group_by(ModelCall.tier, ModelCall.model, ModelCall.outcome, ModelCall.cache_hit)
            ):
                model_calls.add_metric([tier, model, outcome, str(bool(hit)).lower()], n)
            for wf, cost in s.execute(
                select(Job.workflow, func.sum(ModelCall.cost_usd))
                .join(ModelCall, ModelCall.job_id == Job.id)
                .group_by(Job.workflow)
            ):
                model_cost.add_metric([wf], float(cost or 0))
            spend = (
                select(ModelCall.job_id, func.sum(ModelCall.cost_usd).label("cost"))
                .group_by(ModelCall.job_id)
                .subquery()
            )
            for wf, total, n in s.execute(
                select(Job.workflow, func.sum(func.coalesce(spend.c.cost, 0)), func.count(Job.id))
                .outerjoin(spend, spend.c.job_id == Job.id)
                .where(Job.status == "completed")
                .group_by(Job.workflow)
            ):
                per_task.add_metric([wf], float(total or 0) / n if n else 0.0)
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
            incidents.add_metric([], s.scalar(select(func.count()).where(Job.incident)) or 0)
        yield from (jobs, escs, calls, pending, dead, incidents, model_calls, model_cost, per_task)
