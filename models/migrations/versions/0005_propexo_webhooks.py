"""webhooks of Propexo's API: the endpoint's own headers, its model, when it last changed

All nullable: existing endpoints send no extra headers, hear every model, and show their
creation time as their last change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 19:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pmsq.models.base


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('webhook_endpoints', sa.Column('headers', sa.JSON(), nullable=True))
    op.add_column('webhook_endpoints', sa.Column('model', sa.String(length=60), nullable=True))
    op.add_column(
        'webhook_endpoints',
        sa.Column('updated_at', pmsq.models.base.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table('webhook_endpoints', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
        batch_op.drop_column('model')
        batch_op.drop_column('headers')
