"""sync executions resume from their last committed page

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cursor", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("generation", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_sync_executions_integration_generation", ["integration_id", "generation"]
        )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seen_generation", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("seen_generation")
    with op.batch_alter_table("sync_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_executions_integration_generation")
        batch_op.drop_column("generation")
        batch_op.drop_column("cursor")
