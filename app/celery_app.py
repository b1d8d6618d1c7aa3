"""The Celery app object and the fleet's reliability settings."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app import observability
from app.broker import celery_broker_url
from app.jobs import QUEUES, STAGES
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


celery_app = make_celery()
# Log context, Sentry and tracing per task, set up in each worker process (app.observability).
observability.connect_celery()


def publisher() -> Celery:
    """The app this process publishes with, for the broker the current settings name.

    Publishing goes through `send_task` by name, so it needs no task modules; keeping one per
    broker URL lets a process whose settings changed (tests, the demo) publish to the right
    Redis without rebuilding the worker's app.
    """
    from tools.base import per_process

    return per_process(f"celery:{celery_broker_url()}", make_celery)
