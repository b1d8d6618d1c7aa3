"""Job incident flag: set when a read-back does not confirm a write

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 06:25:22.480540
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("incident", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index("ix_jobs_workflow_external", ["workflow", "external_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_workflow_external")
        batch_op.drop_column("incident")
