"""The write floor of bench/intake.py: an endpoint that commits one row per request.

"Accepted means never lost" costs at least one durable write before the answer; this is that
write and nothing else: read the body, INSERT its SHA-256 into a table of the run's PostgreSQL
database and COMMIT (in the threadpool, as opsgate's intake does), answer 202. Same driver
(psycopg through a SQLAlchemy Core engine built by opsgate's own `app.core.db.make_engine`,
so the pool settings are opsgate's), same uvicorn options as `opsgate api` (bench/intake.py
starts it). No signature, no parsing, no publish.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, func, insert
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from app.core.db import make_engine

metadata = MetaData()
accepts = Table(
    "bench_floor_accepts",
    metadata,
    Column("id", Integer, primary_key=True),
    # Unique, as opsgate's intake key is: the write checks an index, like the real one.
    Column("body_sha256", String(64), nullable=False, unique=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
_insert = insert(accepts)
_engine: Engine | None = None


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    global _engine
    _engine = make_engine(os.environ["OPSGATE_DATABASE_URL"])
    metadata.create_all(_engine)
    yield
    _engine.dispose()


app = FastAPI(title="write-floor intake baseline", lifespan=lifespan)


def _store(body: bytes) -> None:
    assert _engine is not None
    with _engine.begin() as conn:  # one transaction, committed on exit
        conn.execute(_insert, {"body_sha256": hashlib.sha256(body).hexdigest()})


@app.post("/webhooks/zendesk")
async def zendesk_webhook(request: Request) -> JSONResponse:
    """Commit the body's hash, then accept it."""
    await run_in_threadpool(_store, await request.body())
    return JSONResponse({"ok": True}, status_code=202)
