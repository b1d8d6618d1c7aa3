"""Prometheus metrics computed at scrape time from shared state, so every process of the fleet
is counted (per-process counters in Celery workers would each see only their share, and
workers serve no /metrics).

Almost everything comes from the database (jobs, escalations, tool calls, model calls, outbox).
The one figure the database does not hold, how long a stage message waited in its queue, is
known only in the worker that takes the message; those workers add it to a histogram kept in
Redis (one pipelined round trip per task), which the scrape reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.core import broker
from app.core.db import session_scope
from app.jobs.lifecycle import QUEUES
from app.models import (
    Escalation,
    Job,
    ModelCall,
    Notification,
    NotificationStatus,
    ToolCall,
    as_utc,
    utcnow,
)

log = structlog.get_logger(__name__)

# Upper bounds in seconds; +Inf is implied.
TOOL_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_QUEUE_WAIT_KEY = "opsgate:metrics:queue_wait:"
_TASK_WORK_KEY = "opsgate:metrics:task_work"


def record_task(task: str, queue: str | None, waited: float | None, tally: Any) -> None:
    """Add one task run to the fleet's figures, in one pipelined round trip (never fails the
    task): how long its message queued (`waited`, None: not a stage message) and the
    statements and commits it sent (`tally`, app.telemetry.dbwork)."""
    from redis.exceptions import RedisError

    try:
        pipe = broker.client().pipeline(transaction=False)
        if queue is not None and waited is not None:
            bucket = next((f"{b:g}" for b in QUEUE_WAIT_BUCKETS if waited <= b), "+Inf")
            key = _QUEUE_WAIT_KEY + queue
            pipe.hincrby(key, bucket, 1)
            pipe.hincrby(key, "count", 1)
            pipe.hincrbyfloat(key, "sum", waited)
        if tally is not None:
            pipe.hincrby(_TASK_WORK_KEY, f"{task}|runs", 1)
            pipe.hincrby(_TASK_WORK_KEY, f"{task}|statements", tally.statements)
            pipe.hincrby(_TASK_WORK_KEY, f"{task}|commits", tally.commits)
        pipe.execute()
    except (RedisError, OSError) as exc:
        log.debug("metrics.task_not_recorded", task=task, error=str(exc))


def task_work() -> dict[str, dict[str, int]]:
    """Per task name: runs, statements and commits counted so far by the fleet."""
    raw: dict[bytes | str, bytes | str] = broker.client().hgetall(_TASK_WORK_KEY)
    out: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else field
        task, _, what = name.rpartition("|")
        out.setdefault(task, {"runs": 0, "statements": 0, "commits": 0})[what] = int(value)
    return out


class FleetCollector(Collector):
    """Job, escalation, tool-call, model-call, outbox and queue figures for the whole fleet."""

    def collect(self) -> Iterator[Metric]:
        with session_scope() as s:
            yield from _jobs(s)
            yield from _tool_calls(s)
            yield from _model_calls(s)
            yield from _outbox(s)
            yield from _notifications(s)
        yield from _queue_wait()
        yield from _task_work()


def _jobs(s: Session) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "opsgate_jobs", "Jobs by workflow and status", labels=["workflow", "status"]
    )
    for wf, st, n in s.execute(
        select(Job.workflow, Job.status, func.count()).group_by(Job.workflow, Job.status)
    ):
        jobs.add_metric([wf, st], n)
    escs = GaugeMetricFamily(
        "opsgate_escalations", "Escalations by reason and status", labels=["reason", "status"]
    )
    for reason, st, n in s.execute(
        select(Escalation.reason, Escalation.status, func.count()).group_by(
            Escalation.reason, Escalation.status
        )
    ):
        escs.add_metric([reason, st], n)
    retries = CounterMetricFamily(
        "opsgate_job_retries",
        "Transient-error retries spent by jobs (a job's retry budget), by workflow",
        labels=["workflow"],
    )
    for wf, n in s.execute(select(Job.workflow, func.sum(Job.retries)).group_by(Job.workflow)):
        retries.add_metric([wf], int(n or 0))
    dead = GaugeMetricFamily(
        "opsgate_dead_letters",
        "Jobs failed because a stage message kept coming back (alert on > 0)",
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
    incidents = GaugeMetricFamily(
        "opsgate_incidents",
        "Jobs whose write a read-back did not confirm (outcome_mismatch; alert on > 0)",
    )
    incidents.add_metric([], s.scalar(select(func.count()).where(Job.incident)) or 0)
    yield from (jobs, escs, retries, dead, incidents)


def _tool_calls(s: Session) -> Iterator[Metric]:
    calls = GaugeMetricFamily(
        "opsgate_tool_calls", "Tool calls by tool and outcome", labels=["tool", "outcome"]
    )
    for tool, outcome, n in s.execute(
        select(ToolCall.tool, ToolCall.outcome, func.count()).group_by(
            ToolCall.tool, ToolCall.outcome
        )
    ):
        calls.add_metric([tool, outcome], n)
    retried = CounterMetricFamily(
        "opsgate_tool_calls_retried",
        "Tool calls made by a repeated delivery of their stage (a retry or a redelivery)",
        labels=["tool"],
    )
    for tool, n in s.execute(
        select(ToolCall.tool, func.count()).where(ToolCall.attempt > 1).group_by(ToolCall.tool)
    ):
        retried.add_metric([tool], n)
    latency = HistogramMetricFamily(
        "opsgate_tool_call_latency_seconds",
        "Latency of tool calls (downstream round trips) by tool",
        labels=["tool"],
    )
    # One pass over the table: a count per bucket bound, cumulative like Prometheus's le.
    bounds = [
        func.sum(case((ToolCall.latency_ms <= b * 1000, 1), else_=0)) for b in TOOL_LATENCY_BUCKETS
    ]
    for tool, total, total_ms, *counts in s.execute(
        select(ToolCall.tool, func.count(), func.sum(ToolCall.latency_ms), *bounds).group_by(
            ToolCall.tool
        )
    ):
        bounds_seen = zip(TOOL_LATENCY_BUCKETS, counts, strict=True)
        buckets = [(f"{b:g}", int(c or 0)) for b, c in bounds_seen]
        latency.add_metric(
            [tool], [*buckets, ("+Inf", int(total))], sum_value=float(total_ms or 0) / 1000
        )
    yield from (calls, retried, latency)


def _model_calls(s: Session) -> Iterator[Metric]:
    model_calls = GaugeMetricFamily(
        "opsgate_model_calls",
        "Model calls by tier, model and outcome (cache hits counted apart)",
        labels=["tier", "model", "outcome", "cache_hit"],
    )
    answered: dict[tuple[str, str], list[int]] = {}
    for tier, model, outcome, hit, n in s.execute(
        select(
            ModelCall.tier, ModelCall.model, ModelCall.outcome, ModelCall.cache_hit, func.count()
        ).group_by(ModelCall.tier, ModelCall.model, ModelCall.outcome, ModelCall.cache_hit)
    ):
        model_calls.add_metric([tier, model, outcome, str(bool(hit)).lower()], n)
        if not hit and outcome in ("ok", "invalid"):
            counts = answered.setdefault((tier, model), [0, 0])
            counts[outcome == "ok"] += n
    adherence = GaugeMetricFamily(
        "opsgate_model_schema_adherence_ratio",
        "Share of model answers (cache hits aside) that were a valid plan or verdict",
        labels=["tier", "model"],
    )
    for (tier, model), (invalid, ok) in sorted(answered.items()):
        adherence.add_metric([tier, model], ok / (ok + invalid))
    tokens = CounterMetricFamily(
        "opsgate_model_tokens",
        "Tokens billed by model vendors (cache hits aside), by model and direction",
        labels=["model", "direction"],
    )
    for model, tin, tout in s.execute(
        select(ModelCall.model, func.sum(ModelCall.input_tokens), func.sum(ModelCall.output_tokens))
        .where(ModelCall.cache_hit.is_(False))
        .group_by(ModelCall.model)
    ):
        tokens.add_metric([model, "input"], int(tin or 0))
        tokens.add_metric([model, "output"], int(tout or 0))
    yield from (model_calls, adherence, tokens, *_costs(s))


def _costs(s: Session) -> Iterator[Metric]:
    model_cost = GaugeMetricFamily(
        "opsgate_model_cost_usd", "Model spend so far by workflow, USD", labels=["workflow"]
    )
    for wf, cost in s.execute(
        select(Job.workflow, func.sum(ModelCall.cost_usd))
        .join(ModelCall, ModelCall.job_id == Job.id)
        .group_by(Job.workflow)
    ):
        model_cost.add_metric([wf], float(cost or 0))
    per_task = GaugeMetricFamily(
        "opsgate_cost_per_completed_task_usd",
        "Model spend of completed jobs divided by their number, by workflow",
        labels=["workflow"],
    )
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
    yield from (model_cost, per_task)


def _notifications(s: Session) -> Iterator[Metric]:
    done = CounterMetricFamily(
        "opsgate_notifications",
        "Reviewer webhook messages by kind and outcome: sent, or failed after every attempt "
        "(alert on failed)",
        labels=["kind", "outcome"],
    )
    pending = GaugeMetricFamily(
        "opsgate_notifications_pending",
        "Reviewer webhook messages not yet delivered, by kind",
        labels=["kind"],
    )
    counts = {
        (kind, st): n
        for kind, st, n in s.execute(
            select(Notification.kind, Notification.status, func.count()).group_by(
                Notification.kind, Notification.status
            )
        )
    }
    for kind in ("opened", "reminder"):
        for outcome in (NotificationStatus.SENT, NotificationStatus.FAILED):
            done.add_metric([kind, outcome], counts.get((kind, outcome), 0))
        pending.add_metric([kind], counts.get((kind, NotificationStatus.PENDING), 0))
    yield done
    yield pending


def _outbox(s: Session) -> Iterator[Metric]:
    pending = GaugeMetricFamily(
        "opsgate_outbox_pending", "Stage messages not yet taken by a worker"
    )
    oldest = GaugeMetricFamily(
        "opsgate_outbox_oldest_pending_seconds",
        "Age of the oldest stage message not yet taken by a worker (0 when none)",
    )
    count, first = s.execute(
        select(func.count(), func.min(Job.message_due_at)).where(Job.message_due_at.is_not(None))
    ).one()
    pending.add_metric([], count or 0)
    since = as_utc(first)
    age = (utcnow() - since).total_seconds() if since is not None else 0.0
    oldest.add_metric([], max(0.0, age))
    yield from (pending, oldest)


def _queue_wait() -> Iterator[Metric]:
    from redis.exceptions import RedisError

    try:
        pipe = broker.client().pipeline(transaction=False)
        for queue in QUEUES:
            pipe.hgetall(_QUEUE_WAIT_KEY + queue)
        rows: list[dict[bytes, bytes]] = pipe.execute()
    except (RedisError, OSError) as exc:
        # The database figures are still worth a scrape without Redis.
        log.warning("metrics.queue_wait_unavailable", error=str(exc))
        return
    wait = HistogramMetricFamily(
        "opsgate_queue_wait_seconds",
        "Time from publishing a stage message (or its retry's due time) to a worker starting it",
        labels=["queue"],
    )
    for queue, raw in zip(QUEUES, rows, strict=True):
        if raw:
            wait.add_metric([queue], *_cumulative(raw))
    yield wait


def _cumulative(raw: dict[bytes, bytes]) -> tuple[list[tuple[str, float]], float]:
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    running, buckets = 0, []
    for bound in QUEUE_WAIT_BUCKETS:
        running += int(fields.get(f"{bound:g}", 0))
        buckets.append((f"{bound:g}", float(running)))
    buckets.append(("+Inf", float(fields.get("count", running))))
    return buckets, float(fields.get("sum", 0))


def _task_work() -> Iterator[Metric]:
    from redis.exceptions import RedisError

    try:
        work = task_work()
    except (RedisError, OSError) as exc:
        log.warning("metrics.task_work_unavailable", error=str(exc))
        return
    runs = CounterMetricFamily("opsgate_task_runs", "Task runs by task", labels=["task"])
    statements = CounterMetricFamily(
        "opsgate_task_db_statements",
        "SQL statements sent by task runs (BEGIN/COMMIT/ROLLBACK not counted), by task",
        labels=["task"],
    )
    commits = CounterMetricFamily(
        "opsgate_task_db_commits", "Database commits made by task runs, by task", labels=["task"]
    )
    for task, figures in sorted(work.items()):
        runs.add_metric([task], figures["runs"])
        statements.add_metric([task], figures["statements"])
        commits.add_metric([task], figures["commits"])
    yield from (runs, statements, commits)
