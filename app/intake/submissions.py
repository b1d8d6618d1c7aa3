"""Intake: every genuine submission becomes exactly one queued job, its plan message due on it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, Insert, Select, bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.audit import chain
from app.core.db import get_engine
from app.errors import ConflictError, InputError, one_line
from app.jobs import lifecycle, outbox
from app.models import Base, Job, new_id, utcnow
from app.workflows import registry


class Submission(BaseModel):
    """A job as submitted: the generic intake body plus where it came from."""

    model_config = ConfigDict(extra="forbid")

    workflow: str
    external_id: str = Field(min_length=1, max_length=255)
    input: dict[str, Any]
    requester: str = Field("unknown", max_length=255)
    source: str = Field("api", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    delivery_id: str | None = Field(None, max_length=255)


def describe(exc: ValidationError) -> str:
    """A validation error as one line: `field: problem; field: problem`."""
    return one_line(exc, "body")


def parse_submission(raw: Any) -> Submission:
    """Validate a submission and its workflow input, or raise InputError saying what is wrong."""
    try:
        sub = Submission.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"not a job submission: {describe(exc)}") from exc
    model = registry.submittable(sub.workflow).input_model
    try:
        validated = model.model_validate(sub.input)
    except ValidationError as exc:
        raise InputError(f"invalid input for {sub.workflow}: {describe(exc)}") from exc
    # Store what was validated ("4821" becomes 4821), never the raw, uncoerced body.
    sub = sub.model_copy(update={"input": validated.model_dump(mode="json")})
    _check_storable(sub)
    return sub


def _check_storable(sub: Submission) -> None:
    """Refuse text no database stores: NUL characters and lone surrogates."""
    try:
        text = chain.canonical_json(sub.model_dump(mode="json")).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError("submission holds text that is not valid Unicode") from exc
    if b"\\u0000" in text:
        raise InputError("submission holds a NUL character, which cannot be stored")


def intake_key(sub: Submission) -> str:
    """source + delivery id: what makes two deliveries the same job."""
    return f"{sub.source}:{sub.delivery_id or sub.external_id}"


def request_hash(sub: Submission) -> str:
    """Hash of what the caller asked for (workflow, external id, requester, input)."""
    body = {
        "workflow": sub.workflow,
        "external_id": sub.external_id,
        "requester": sub.requester,
        "input": sub.input,
    }
    return chain.sha256_hex(chain.canonical_json(body))


@dataclass(frozen=True)
class Accepted:
    """One submission's outcome: its job, whether this call created it, and (if it did) the
    outbox messages to send once the transaction has committed."""

    job_id: str
    created: bool
    messages: tuple[lifecycle.Message, ...] = ()


_JOBS = Base.metadata.tables["jobs"]
_TABLES = Base.metadata.tables
# Built once: plain Core INSERTs (no ORM unit of work). `inline()`: nothing is read back (no
# RETURNING of the delivery's id, which nobody uses).
_INSERT_DELIVERY = insert(_TABLES["deliveries"]).inline()
_FIRST_STAGE = lifecycle.STAGES[lifecycle.QUEUED]
# The rows a new job comes with, by table: its first audit event (which the `job_events` view
# also shows as the job's first history entry). Its plan message is the job row's own
# `message_due_at`: the job row is the outbox.
_WITH_JOB = {"audit_events": "au"}


@cache
def _insert_job(dialect: str) -> Insert:
    """INSERT a job unless its intake key (or its caller's Idempotency-Key) is taken.

    One statement instead of SELECT-then-INSERT in a savepoint: a concurrent duplicate waits
    for the winner's commit and then inserts nothing, so there is no race and no error path.
    Built once per dialect (both spell ON CONFLICT the same way; SQLite since 3.24).
    """
    ins = sqlite_insert(_JOBS) if dialect == "sqlite" else pg_insert(_JOBS)
    return ins.on_conflict_do_nothing().returning(_JOBS.c.id)


@cache
def _insert_job_with_rows(columns: tuple[tuple[str, tuple[str, ...]], ...]) -> Select[Any]:
    """PostgreSQL: the job and the rows it comes with in ONE statement (one round trip).

    `WITH job AS (INSERT INTO jobs ... ON CONFLICT DO NOTHING RETURNING id), ev AS (INSERT
    INTO audit_events SELECT ... FROM job), ...`: a repeat inserts no job, so the dependent
    INSERTs select no row and insert nothing. Foreign keys are checked at the end of the
    statement, when the job exists. `columns` names each table's columns, jobs first.
    """
    (_, job_cols), *others = columns
    job = (
        pg_insert(_JOBS)
        .values({c: bindparam(f"jobs_{c}", type_=_JOBS.c[c].type) for c in job_cols})
        .on_conflict_do_nothing()
        .returning(_JOBS.c.id)
        .cte("job")
    )
    ctes = []
    for name, cols in others:
        table, cols_ = _TABLES[name], [c for c in cols if c != "job_id"]
        rows = select(job.c.id, *[bindparam(f"{name}_{c}", type_=table.c[c].type) for c in cols_])
        ctes.append(insert(table).from_select(["job_id", *cols_], rows).cte(_WITH_JOB[name]))
    return select(job.c.id).add_cte(*ctes)


def accept_core(
    conn: Connection,
    sub: Submission,
    *,
    submitted_by: str,
    idempotency_key: str | None = None,
    check_body: bool = False,
) -> Accepted:
    """Create the job (status queued, its plan message due), and its first audit event,
    or find the original for a repeat; the caller commits, then sends `Accepted.messages`
    (app.jobs.outbox.send_after_commit). One statement on PostgreSQL, one per row on SQLite.

    With `check_body`, a repeat whose body differs from the original raises ConflictError
    instead of returning the original (the jobs API's Idempotency-Key contract).
    """
    digest, key, job_id, now = request_hash(sub), intake_key(sub), new_id(), utcnow()
    message = lifecycle.Message(job_id, _FIRST_STAGE.task, _FIRST_STAGE.queue)
    first = chain.first_event_values(
        job_id,
        "intake",
        submitted_by,
        {
            "source": sub.source,
            "intake_key": key,
            "workflow": sub.workflow,
            "requester_ref": chain.sha256_hex(sub.requester)[:16],
            "input_hash": chain.sha256_hex(chain.canonical_json(sub.input)),
        },
    )
    rows: dict[str, dict[str, Any]] = {
        "jobs": {
            "id": job_id,
            "source": sub.source,
            "external_id": sub.external_id,
            "intake_key": key,
            "workflow": sub.workflow,
            "requester": sub.requester,
            "submitted_by": submitted_by,
            "input": sub.input,
            "status": lifecycle.QUEUED,
            "request_hash": digest,
            "idempotency_key": idempotency_key,
            "version": 1,
            "stage_deliveries": 0,
            "current_step": 0,
            "retries": 0,
            "incident": False,
            "created_at": now,
            "updated_at": now,
            "message_due_at": now,
            # The chain's head is the first event below.
            "audit_seq": first["seq"],
            "audit_head": first["hash"],
        },
        "audit_events": first,
    }
    if conn.dialect.name == "postgresql":
        stmt = _insert_job_with_rows(tuple((t, tuple(r)) for t, r in rows.items()))
        params = {f"{t}_{c}": v for t, r in rows.items() for c, v in r.items()}
        created = conn.execute(stmt, params).first() is not None
    else:
        created = conn.execute(_insert_job(conn.dialect.name), rows["jobs"]).first() is not None
        if created:
            for name in _WITH_JOB:
                conn.execute(insert(_TABLES[name]), rows[name])
    if not created:
        return Accepted(
            _original(conn, sub, key, digest, submitted_by, idempotency_key, check_body), False
        )
    return Accepted(job_id, True, (message,))


def _original(
    conn: Connection,
    sub: Submission,
    key: str,
    digest: str,
    submitted_by: str,
    idempotency_key: str | None,
    check_body: bool,
) -> str:
    """The job a repeat delivery (or a reused Idempotency-Key) names; ConflictError when the
    caller asked for body checks and the body differs."""
    if idempotency_key is not None:
        prior = conn.execute(
            select(_JOBS.c.id, _JOBS.c.request_hash).where(
                _JOBS.c.submitted_by == submitted_by, _JOBS.c.idempotency_key == idempotency_key
            )
        ).first()
        if prior is not None:
            if prior.request_hash != digest:
                raise ConflictError(
                    f"Idempotency-Key {idempotency_key!r} was already used "
                    f"with a different request (job {prior.id})"
                )
            return str(prior.id)
    existing = conn.execute(
        select(_JOBS.c.id, _JOBS.c.request_hash).where(_JOBS.c.intake_key == key)
    ).first()
    if existing is None:
        # The INSERT met a conflict, so the row existed when it ran; gone now means deleted.
        raise ConflictError(f"{sub.external_id!r} conflicted with a job that no longer exists")
    if check_body and existing.request_hash != digest:
        raise ConflictError(
            f"{sub.external_id!r} was already submitted with a different "
            f"request (job {existing.id})"
        )
    return str(existing.id)


def accept(
    session: Session,
    sub: Submission,
    *,
    submitted_by: str,
    idempotency_key: str | None = None,
    check_body: bool = False,
) -> tuple[Job, bool]:
    """`accept_core`, returning the job as an ORM object (for callers that go on using it in
    the same session); the caller commits, then publishes (app.jobs.outbox)."""
    done = accept_core(
        session.connection(),
        sub,
        submitted_by=submitted_by,
        idempotency_key=idempotency_key,
        check_body=check_body,
    )
    job = session.get(Job, done.job_id)
    assert job is not None  # inserted or found in this transaction
    return job, done.created


def submit(raw: Any, *, submitted_by: str) -> tuple[str, bool]:
    """Validate, store and publish one submission; returns (job id, created)."""

    sub = parse_submission(raw)
    # A Core connection, not a Session: nothing here needs the ORM's unit of work.
    with get_engine().begin() as conn:
        done = accept_core(conn, sub, submitted_by=submitted_by)
    outbox.send_after_commit(done.messages)
    return done.job_id, done.created


def accept_delivery(
    subs: list[Submission],
    *,
    submitted_by: str,
    source: str,
    content_type: str,
    headers: dict[str, str],
    body: str,
    idempotency_key: str | None = None,
    check_body: bool = False,
) -> list[Accepted]:
    """Store every submission of one delivery and the delivery itself in ONE transaction.

    Either all of them are stored or none (a Salesforce message is acknowledged only then).
    Returns one Accepted per submission; the caller sends their messages after this returns
    (app.jobs.outbox.send_after_commit).
    """
    with get_engine().begin() as conn:  # committed on exit, rolled back on error
        results = [
            accept_core(
                conn,
                sub,
                submitted_by=submitted_by,
                idempotency_key=idempotency_key,
                check_body=check_body,
            )
            for sub in subs
        ]
        if any(done.created for done in results):
            conn.execute(
                _INSERT_DELIVERY,
                {
                    "source": source,
                    "delivery_key": ",".join(intake_key(s) for s in subs)[:400],
                    "content_type": content_type,
                    "headers": headers,
                    "body": body,
                    "body_sha256": chain.sha256_hex(body),
                    "job_ids": [done.job_id for done in results if done.created],
                    "received_at": utcnow(),
                },
            )
    return results
