"""parking and retry budget

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 01:25:59.914031
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resume_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("parked_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retries", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("retries")
        batch_op.drop_column("parked_since")
        batch_op.drop_column("resume_status")
