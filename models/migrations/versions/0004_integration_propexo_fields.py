"""integration fields of Propexo's API: system, allow_manual_syncs, based_on_integration_id

Existing integrations become PRODUCTION ones that allow manual syncs, as before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 19:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs whose server defaults fill the rows already there: batch mode would
    # rebuild `integrations` on SQLite, and its foreign keys refuse dropping the old table.
    op.add_column(
        'integrations',
        sa.Column('system', sa.String(length=10), server_default='PRODUCTION', nullable=False),
    )
    op.add_column(
        'integrations',
        sa.Column('allow_manual_syncs', sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.add_column(
        'integrations', sa.Column('based_on_integration_id', sa.String(length=36), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table('integrations', schema=None) as batch_op:
        batch_op.drop_column('based_on_integration_id')
        batch_op.drop_column('allow_manual_syncs')
        batch_op.drop_column('system')
