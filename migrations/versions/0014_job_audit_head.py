"""The head of each job's audit chain kept on the job row (issue 20), backfilled

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("audit_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("audit_head", sa.String(length=64), nullable=False, server_default=GENESIS)
        )
    # Backfill from the chains themselves: the last event's seq and hash per job.
    op.execute(
        """
        UPDATE jobs SET
          audit_seq = COALESCE(
            (SELECT MAX(e.seq) FROM audit_events e WHERE e.job_id = jobs.id), 0),
          audit_head = COALESCE(
            (SELECT e.hash FROM audit_events e WHERE e.job_id = jobs.id
             ORDER BY e.seq DESC LIMIT 1), '"""
        + GENESIS
        + """')
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("audit_head")
        batch.drop_column("audit_seq")
