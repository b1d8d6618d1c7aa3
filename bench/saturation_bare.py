"""The bare side of bench/saturation.py: a Celery threads pool running chains of sleeps.

Run by bench/saturation.py as `python -m celery -A bench.saturation_bare worker -P threads ...`
with BENCH_BROKER_URL set. Each chain stands for one support_refund job: one hop per pipeline
stage hop, each hop sleeping for the sandbox round trips that stage makes in sequence (the
shape is measured from the pipeline run), so a chain holds a pool thread exactly as long as
the job's critical path and nothing else. The delivery settings (serializer, acks_late,
prefetch, task events, visibility timeout, ...) are opsgate's own (bench.bare copies them), so
what the bare side adds to the sleeps is what Celery + Redis cost per hop on this machine.
The last hop appends its finish time to a Redis list, whose length counts finished chains.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery, chain

from bench.bare import BROKER_ENV, bare_app, redis_for

DONE_KEY = "bench:saturation:bare:done"
# The pipeline's stage queues, so the worker polls several queues as the opsgate worker does.
STAGE_QUEUES = {
    "plan": "sat_plan",
    "verify_proposal": "sat_verify",
    "execute": "sat_execute",
    "verify_outcome": "sat_verify",
}
QUEUES = ("sat_plan", "sat_verify", "sat_execute")


def broker_url() -> str:
    return os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/11")


def make_app() -> Celery:
    return bare_app("bench_saturation_bare", broker_url(), QUEUES)


app = make_app()


def _redis() -> redis.Redis:
    return redis_for(broker_url())


@app.task(name="bench.saturation.hop")
def hop(index: int, seconds: float) -> None:
    """One stage hop: wait as long as its sandbox round trips."""
    time.sleep(seconds)


@app.task(name="bench.saturation.done")
def done(index: int, seconds: float) -> None:
    """The last hop: wait, then record that one more chain finished, and when."""
    time.sleep(seconds)
    _redis().rpush(DONE_KEY, repr(time.time()))


def sleep_chain(n: int, hops: list[tuple[str, float]]) -> Any:
    """The chain for the n-th submission: (stage name, seconds) per hop, in order."""
    sigs = [hop.si(n, secs).set(queue=STAGE_QUEUES.get(stage, "sat_plan")) for stage, secs in hops]
    last_stage, last_secs = hops[-1]
    sigs[-1] = done.si(n, last_secs).set(queue=STAGE_QUEUES.get(last_stage, "sat_plan"))
    return chain(*sigs)
