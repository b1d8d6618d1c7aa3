"""How opsgate configures Celery: queues, routes, the fleet's reliability settings, the beat
schedule, and what every published message carries. Workers (app.celery_app) and publishers
(the outbox, in the API and the CLI as much as in a worker) build their Celery app here, so
publishing a stage message needs neither the task modules nor the telemetry hooks."""

from __future__ import annotations

import re
import time
from typing import Any

from celery import Celery, signals
from kombu.entity import Queue

from app.core.broker import celery_broker_url
from app.core.clients import per_process
from app.core.redaction import redact
from app.jobs.lifecycle import QUEUES, STAGES
from app.settings import get_settings

# Stamped on every message when it is published: the worker that takes it records how long
# it waited in its queue (app.telemetry.observability).
PUBLISHED_HEADER = "opsgate_published_at"
_ID_ARG = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")

TASK_MODULES = ["tasks.plan", "tasks.verify", "tasks.execute", "tasks.human", "tasks.maintenance"]


def stamp_message(headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
    """Stamp the publish time (queue wait) and keep anything but ids out of what workers
    report about the task's arguments (Flower, events, logs): argsrepr/kwargsrepr."""
    if headers is None:
        return
    headers[PUBLISHED_HEADER] = time.time()
    args: Any = ()
    kwargs: Any = {}
    if isinstance(body, tuple | list) and len(body) >= 2:
        args, kwargs = body[0], body[1]
    headers["argsrepr"] = repr([_shown(a) for a in args])
    headers["kwargsrepr"] = repr({k: _shown(v) for k, v in dict(kwargs).items()})


def _shown(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    plain_id = isinstance(value, str) and _ID_ARG.match(value) and redact(value) == value
    return value if plain_id else "[redacted]"


def make_celery() -> Celery:
    """Build the app from settings (called at import; reads no network). Whoever builds one
    publishes stamped messages: Celery's signals are process-wide, connected once."""
    signals.before_task_publish.connect(stamp_message, weak=False, dispatch_uid="opsgate.publish")
    settings = get_settings()
    app = Celery("opsgate", include=TASK_MODULES)
    routes = {stage.task: {"queue": stage.queue} for stage in STAGES.values()}
    routes["opsgate.reap"] = {"queue": "maintenance"}
    app.conf.update(
        broker_url=celery_broker_url(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        # Every countdown opsgate uses stays far below this, and so does every task's run
        # time: otherwise Redis hands an unacked message to a second worker while the
        # first still runs it.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        # Publishing is retried briefly; the outbox relay covers longer broker outages.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=min(600, settings.visibility_timeout // 2),
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="plan",
        task_routes=routes,
        beat_schedule={
            "reap": {
                "task": "opsgate.reap",
                "schedule": settings.reaper_interval,
                "options": {"queue": "maintenance", "expires": settings.reaper_interval * 3},
            },
            "audit-checkpoint": {
                "task": "opsgate.audit_checkpoint",
                "schedule": settings.audit_checkpoint_seconds,
                "options": {
                    "queue": "maintenance",
                    "expires": settings.audit_checkpoint_seconds * 3,
                },
            },
            # The safety net of the reviewers' webhook: reminders, and retries of what failed.
            "notify-reviewers": {
                "task": "opsgate.notify_reviewers",
                "schedule": settings.reaper_interval,
                "options": {"queue": "maintenance", "expires": settings.reaper_interval * 3},
            },
            "retention-purge": {
                "task": "opsgate.retention_purge",
                "schedule": 3600.0,
                "options": {"queue": "maintenance", "expires": 3600.0},
            },
        },
    )
    return app


def publisher() -> Celery:
    """The app this process publishes with, for the broker the current settings name.

    Publishing goes through `send_task` by name, so it needs no task modules; keeping one per
    broker URL lets a process whose settings changed (tests, the demo) publish to the right
    Redis without rebuilding the worker's app.
    """
    return per_process(f"celery:{celery_broker_url()}", make_celery)
