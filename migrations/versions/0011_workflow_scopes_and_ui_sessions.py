"""Workflow scopes on API keys, and the reviewer console's sign-in sessions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflows", JSON, nullable=True))
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("workflows", JSON, nullable=True),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=255), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_index("ix_ui_sessions_principal", "ui_sessions", ["principal"])
    op.create_index("ix_ui_sessions_key_sha256", "ui_sessions", ["key_sha256"])


def downgrade() -> None:
    op.drop_index("ix_ui_sessions_key_sha256", table_name="ui_sessions")
    op.drop_index("ix_ui_sessions_principal", table_name="ui_sessions")
    op.drop_table("ui_sessions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("workflows")
