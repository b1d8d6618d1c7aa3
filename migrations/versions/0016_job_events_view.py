"""job_events becomes a view of the audit chain (issue 20): one record of each transition

Every transition was written twice, as a `job_events` row and as the audit chain's
`transition` event with the same statuses, actor and time (and every accept as a row beside
the chain's `intake` event). The readable history is now a view over those chained events: one
INSERT less per stage hop, one row less per transition, and the history can never disagree
with the chain. Its `reason` is the chained one, redacted of personal data (the table kept the
raw text, outside the erasure store); the table's rows are dropped with it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _field(dialect: str, name: str) -> str:
    if dialect == "postgresql":
        return f"payload->>'{name}'"
    return f"json_extract(payload, '$.{name}')"


def view_sql(dialect: str) -> str:
    """The view, spelled for the dialect's JSON operators (app.models.JobEvent maps it)."""
    return f"""
        CREATE VIEW job_events AS
        SELECT id, job_id,
          CASE WHEN kind = 'intake' THEN NULL ELSE {_field(dialect, "from")} END AS from_status,
          CASE WHEN kind = 'intake' THEN 'queued' ELSE {_field(dialect, "to")} END AS to_status,
          CASE WHEN kind = 'intake' THEN 'accepted' ELSE {_field(dialect, "reason")} END
            AS reason,
          actor, at
        FROM audit_events
        WHERE kind IN ('intake', 'transition')
    """


def upgrade() -> None:
    op.drop_index("ix_job_events_job_id", table_name="job_events")
    op.drop_table("job_events")
    op.execute(view_sql(op.get_bind().dialect.name))


def downgrade() -> None:
    # The table is filled from the view, then takes its name (SQLite cannot rename a view).
    op.create_table(
        "job_events_restored",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
    )
    op.execute(
        "INSERT INTO job_events_restored (job_id, from_status, to_status, reason, actor, at)"
        " SELECT job_id, from_status, to_status, reason, actor, at FROM job_events ORDER BY id"
    )
    op.execute("DROP VIEW job_events")
    op.rename_table("job_events_restored", "job_events")
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])
