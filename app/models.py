"""SQLAlchemy 2 models: jobs (each its own outbox), plan steps, events, audit, tool and model
calls, escalations."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The previous hash of a chain's first audit event.
GENESIS_HASH = "0" * 64


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the models use."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands them back naive)."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_id() -> str:
    """A random job id."""
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for Alembic."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


class Job(Base):
    """One unit of inbound work and where it is in plan -> verify -> act -> verify."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_updated", "status", "updated_at"),
        # The soft check reads a subject's earlier jobs.
        Index("ix_jobs_workflow_external", "workflow", "external_id"),
        Index("ix_jobs_message_due", "message_due_at"),
        UniqueConstraint("submitted_by", "idempotency_key", name="uq_jobs_submitted_by_idem"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    # source + delivery/event id: the intake idempotency key, unique so a replay creates nothing.
    intake_key: Mapped[str] = mapped_column(String(400), unique=True)
    workflow: Mapped[str] = mapped_column(String(64), index=True)
    requester: Mapped[str] = mapped_column(String(255))
    submitted_by: Mapped[str] = mapped_column(String(255))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Hash of the submission as received: a repeat with a different body is a conflict.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # The client's Idempotency-Key header (jobs API), unique per calling key.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Deliveries of the current stage's message; past the limit the job is dead-lettered.
    stage_deliveries: Mapped[int] = mapped_column(Integer, default=0)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    plan_summary: Mapped[str | None] = mapped_column(Text)
    plan_confidence: Mapped[float | None]
    planner_tier: Mapped[str | None] = mapped_column(String(32))
    resume_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The status a paused, failed or escalated job goes back to on resume or retry.
    resume_status: Mapped[str | None] = mapped_column(String(32))
    # When the job was first parked behind an open breaker (cleared when it moves on).
    parked_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Transient-error retries spent so far, over all stages (the job's retry budget).
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The head of the job's audit chain (its last event's seq and hash), kept with the job so
    # a stage appends without looking the head up (app.audit.chain); 0 and the genesis hash
    # before the first event. The unique (job_id, seq) of the events still refuses a fork.
    # When the message for the job's current stage was written and not yet taken by a worker
    # (None: taken, or no stage works on this status). The job row is the transactional
    # outbox: the transition that writes the message sets this in the job's own UPDATE, the
    # stage that takes the message clears it in the UPDATE that counts the delivery, and the
    # relay sends again what waited longer than the grace period (app.jobs.outbox).
    message_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    audit_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    audit_head: Mapped[str] = mapped_column(
        String(64), default=GENESIS_HASH, server_default=GENESIS_HASH
    )
    # Set when a read-back after a write did not confirm the change (outcome_mismatch).
    incident: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    steps: Mapped[list[PlanStep]] = relationship(
        back_populates="job", order_by="PlanStep.position", lazy="select"
    )

    # Optimistic locking: every UPDATE carries "WHERE version = <read version>", so two
    # workers racing on one job cannot both advance it (the loser gets StaleDataError).
    __mapper_args__ = {"version_id_col": version}


# Plain string constants, like the job statuses in app/jobs/lifecycle.py (not enum members: the
# database drivers would store an Enum by its name).
class StepStatus:
    """Where a plan step is: waiting, claimed by a worker, done, or failed."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class EscalationStatus:
    """An escalation waits for a person (open) until decided or superseded (closed)."""

    OPEN = "open"
    CLOSED = "closed"


class PlanStep(Base):
    """One tool call of a stored plan; its idempotency key guards the side effect."""

    __tablename__ = "plan_steps"
    __table_args__ = (UniqueConstraint("job_id", "step_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(16))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    position: Mapped[int] = mapped_column(Integer)
    tool: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSONType)
    args_hash: Mapped[str] = mapped_column(String(64))
    rationale: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    label: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Which delivery holds the claim; only that one may store the result.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    job: Mapped[Job] = relationship(back_populates="steps")


class JobEvent(Base):
    """One state transition of a job (the readable history): a read-only view of the audit
    chain's `intake` and `transition` events (migration 0016), never written to."""

    __tablename__ = "job_events"
    __table_args__ = {"info": {"view": True}}  # created by its migration; nothing to empty

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the audit event's id
    job_id: Mapped[str] = mapped_column(String(36))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """Append-only, hash-chained record of everything that happened to a job."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"), Index("ix_audit_events_at", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditCheckpoint(Base):
    """One link of the global chain that anchors the job chains' heads.

    Each checkpoint lists the chains whose head moved since the one before, with the head's
    seq and hash, and is hash-linked to its predecessor: a deleted last event, a deleted job
    or a re-hashed chain no longer matches what a checkpoint anchored.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    heads: Mapped[dict[str, Any]] = mapped_column(JSONType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditHead(Base):
    """The head each chain had at the last checkpoint: a cache that makes the next checkpoint
    cheap. Verification never trusts it; it replays the checkpoints themselves."""

    __tablename__ = "audit_heads"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ToolCall(Base):
    """One call to a downstream system: inputs, outputs, latency and outcome."""

    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    step_pk: Mapped[int | None] = mapped_column(ForeignKey("plan_steps.id"))
    stage: Mapped[str] = mapped_column(String(16))
    tool: Mapped[str] = mapped_column(String(64))
    system: Mapped[str] = mapped_column(String(32))
    service_identity: Mapped[str] = mapped_column(String(128))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(String(16))
    latency_ms: Mapped[float]
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelCall(Base):
    """One call to a model (or a cache hit standing for one): what was asked, what came
    back (both redacted), tokens, cost, latency, and why the router chose that model."""

    __tablename__ = "model_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    prompt_version: Mapped[str] = mapped_column(String(64))
    passages: Mapped[list[str]] = mapped_column(JSONType)
    router: Mapped[list[str]] = mapped_column(JSONType)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(String(24))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0))
    latency_ms: Mapped[float]
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelSpend(Base):
    """Committed model spend per budget scope (a workflow) and UTC day, in millionths of a
    USD: the durable ledger behind the fleet's Redis budget counter (app/controls/budget.py)."""

    __tablename__ = "model_spend"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    micros: Mapped[int] = mapped_column(BigInteger, default=0)


class Approval(Base):
    """A reviewer's approval of one exact action, and the signed token that carries it."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"))
    step_pk: Mapped[int] = mapped_column(ForeignKey("plan_steps.id"))
    action_hash: Mapped[str] = mapped_column(String(64))
    approvers: Mapped[list[str]] = mapped_column(JSONType)
    key_id: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CapUsage(Base):
    """What autonomous actions spent today against one daily cap (minor units)."""

    __tablename__ = "cap_usage"

    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)


class CapReservation(Base):
    """One step's share of the daily caps, so a retried step never reserves twice."""

    __tablename__ = "cap_reservations"

    step_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    day: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KillSwitchEvent(Base):
    """Who engaged or released a kill switch, when and why."""

    __tablename__ = "kill_switch_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(160))
    engaged: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Escalation(Base):
    """A job handed to the human queue: why, with what evidence, and what was decided."""

    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    reason: Mapped[str] = mapped_column(String(48), index=True)
    detail: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stage: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=EscalationStatus.OPEN)
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(255))
    # Reviewers who approved so far (two are needed above the two-person threshold).
    approved_by: Mapped[list[str] | None] = mapped_column(JSONType)
    # A reviewer working it (others cannot decide until the claim runs out).
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # An approvable escalation not decided by then expires: the action is not taken.
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NotificationStatus:
    """Where a reviewer notification is: waiting, delivered, given up, or not needed."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # every attempt failed: given up
    SKIPPED = "skipped"  # the escalation closed before it went out


class Notification(Base):
    """A message to the reviewers' webhook about an escalation: one per escalation and kind
    (`opened`, `reminder`), created in the transaction that makes it due and delivered after
    commit, so a crash loses none and a second process sends none twice."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("escalation_id", "kind"),
        Index("ix_notifications_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Sent with the message so a receiver can drop the rare second delivery.
    notification_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A delivery run holds the row until then; another run takes it only after.
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    escalation: Mapped[Escalation] = relationship()


class Delivery(Base):
    """One inbound delivery as received (credentials removed), kept for audit."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    delivery_key: Mapped[str] = mapped_column(String(400), index=True)
    content_type: Mapped[str] = mapped_column(String(128))
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    body: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    job_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """A calling system's key: only its hash is stored; the name is the caller's identity."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The workflows the key may see and act on (None: every workflow).
    workflows: Mapped[list[Any] | None] = mapped_column(JSONType)


class UiSession(Base):
    """A reviewer's sign-in to the console: the record of who signed in with which key (or
    through the OIDC provider as which subject), when and from where, and when and why the
    session ended. The browser holds only a random token; its SHA-256 is stored here, never
    the API key."""

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    principal: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    workflows: Mapped[list[Any] | None] = mapped_column(JSONType)
    # How the person signed in: "key" (an API key) or "oidc" (the OIDC provider).
    source: Mapped[str] = mapped_column(String(8), default="key", server_default="key")
    # The SHA-256 of the key signed in with: revoking or removing that key ends the session.
    # None for an OIDC session, which ends only at its expiry or sign-out.
    key_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # The provider's `sub` claim for an OIDC session (its stable id for the person).
    subject: Mapped[str | None] = mapped_column(String(255))
    client: Mapped[str] = mapped_column(String(255), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(String(32))
