"""Intake: every genuine submission becomes exactly one queued job (plus its outbox message)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import chain
from app.core.db import session_scope
from app.errors import ConflictError, InputError, one_line
from app.jobs import lifecycle, outbox
from app.models import Delivery, Job, JobEvent
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


def accept(
    session: Session,
    sub: Submission,
    *,
    submitted_by: str,
    idempotency_key: str | None = None,
    check_body: bool = False,
) -> tuple[Job, bool]:
    """Create the job (status queued) with its outbox message; a repeat returns the original.

    Returns (job, created); the caller commits, then publishes (app.jobs.outbox). With
    `check_body`, a repeat whose body differs from the original raises ConflictError
    instead of returning the original (the jobs API's Idempotency-Key contract).
    """
    digest = request_hash(sub)
    if idempotency_key is not None:
        prior = session.scalar(
            select(Job).where(
                Job.submitted_by == submitted_by, Job.idempotency_key == idempotency_key
            )
        )
        if prior is not None:
            if prior.request_hash != digest:
                raise ConflictError(
                    f"Idempotency-Key {idempotency_key!r} was already used "
                    f"with a different request (job {prior.id})"
                )
            return prior, False
    key = intake_key(sub)
    existing = session.scalar(select(Job).where(Job.intake_key == key))
    if existing is None:
        job = Job(
            source=sub.source,
            external_id=sub.external_id,
            intake_key=key,
            workflow=sub.workflow,
            requester=sub.requester,
            submitted_by=submitted_by,
            input=sub.input,
            status=lifecycle.QUEUED,
            request_hash=digest,
            idempotency_key=idempotency_key,
        )
        try:
            with session.begin_nested():
                session.add(job)
                session.flush()
        except IntegrityError:
            # A concurrent delivery of the same event (or key) won the unique constraint.
            existing = session.scalar(select(Job).where(Job.intake_key == key))
            if existing is None and idempotency_key is not None:
                existing = session.scalar(
                    select(Job).where(
                        Job.submitted_by == submitted_by, Job.idempotency_key == idempotency_key
                    )
                )
            if existing is None:
                raise
        else:
            _record_intake(session, job, sub, key, submitted_by)
            return job, True
    if check_body and existing.request_hash != digest:
        raise ConflictError(
            f"{sub.external_id!r} was already submitted with a different "
            f"request (job {existing.id})"
        )
    return existing, False


def _record_intake(session: Session, job: Job, sub: Submission, key: str, actor: str) -> None:
    session.add(
        JobEvent(
            job_id=job.id,
            from_status=None,
            to_status=lifecycle.QUEUED,
            reason="accepted",
            actor=actor,
        )
    )
    chain.append(
        session,
        job.id,
        "intake",
        actor,
        {
            "source": sub.source,
            "intake_key": key,
            "workflow": sub.workflow,
            "requester_ref": chain.sha256_hex(sub.requester)[:16],
            "input_hash": chain.sha256_hex(chain.canonical_json(sub.input)),
        },
        first=True,
    )
    lifecycle.enqueue_stage(session, job)


def submit(raw: Any, *, submitted_by: str) -> tuple[str, bool]:
    """Validate, store and publish one submission; returns (job id, created)."""

    sub = parse_submission(raw)
    with session_scope() as session:
        job, created = accept(session, sub, submitted_by=submitted_by)
        session.commit()
        job_id = job.id
    if created:
        outbox.publish_for_job(job_id)
    return job_id, created


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
) -> list[tuple[str, bool]]:
    """Store every submission of one delivery and the delivery itself in ONE transaction.

    Either all of them are stored or none (a Salesforce message is acknowledged only then).
    Returns (job id, created) per submission; the caller publishes after this returns.
    """
    with session_scope() as session:
        results = []
        for sub in subs:
            job, created = accept(
                session,
                sub,
                submitted_by=submitted_by,
                idempotency_key=idempotency_key,
                check_body=check_body,
            )
            results.append((job.id, created))
        if any(created for _, created in results):
            session.add(
                Delivery(
                    source=source,
                    delivery_key=",".join(intake_key(s) for s in subs)[:400],
                    content_type=content_type,
                    headers=headers,
                    body=body,
                    body_sha256=chain.sha256_hex(body),
                    job_ids=[job_id for job_id, created in results if created],
                )
            )
        session.commit()
    return results
