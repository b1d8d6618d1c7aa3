"""How opsgate configures Celery: queues, routes, the fleet's reliability settings, the beat
schedule. Workers (app.celery_app) and publishers (the outbox) build their Celery app from
here, so publishing a stage message needs neither the task modules nor the telemetry hooks."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from app.core.broker import celery_broker_url
from app.core.clients import per_process
from app.jobs.lifecycle import QUEUES, STAGES
from app.settings import get_settings

TASK_MODULES = ["tasks.plan", "tasks.verify", "tasks.execute", "tasks.human", "tasks.maintenance"]


def make_celery() -> Celery:
    """Build the app from settings (called at import; reads no network)."""
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
