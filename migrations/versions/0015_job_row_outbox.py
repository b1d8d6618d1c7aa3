"""The job row is the outbox (issue 20): jobs.message_due_at replaces the outbox table

A stage message is written by setting message_due_at in the UPDATE that moves the job, and
taken by clearing it in the UPDATE that counts its delivery: no row to insert, to mark or to
re-read. Messages still pending at the upgrade carry over (the relay sends them).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("message_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_jobs_message_due", ["message_due_at"])
    op.execute(
        """
        UPDATE jobs SET message_due_at = (
          SELECT MIN(o.created_at) FROM outbox o
          WHERE o.job_id = jobs.id AND o.published_at IS NULL)
        """
    )
    op.drop_table("outbox")


def downgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.create_index("ix_outbox_pending", ["published_at", "created_at"])
        batch.create_index("ix_outbox_job_id", ["job_id"])
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_message_due")
        batch.drop_column("message_due_at")
