"""Console sessions opened through the OIDC provider: their source and subject

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ui_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=8), nullable=False, server_default="key")
        )
        batch_op.add_column(sa.Column("subject", sa.String(length=255), nullable=True))
        batch_op.alter_column("key_sha256", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # An OIDC session has no key to fall back on: the rows go with the columns.
    op.execute("DELETE FROM ui_sessions WHERE source = 'oidc'")
    with op.batch_alter_table("ui_sessions", schema=None) as batch_op:
        batch_op.alter_column("key_sha256", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("subject")
        batch_op.drop_column("source")
