"""accounts.webhooks_version: moves with every change of the account's webhook endpoints

Workers keep an account's endpoints while this version stays what they read with them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN whose server default fills the rows already there: batch mode would
    # rebuild `accounts` on SQLite, and the foreign keys to it refuse dropping the old table.
    op.add_column(
        'accounts',
        sa.Column('webhooks_version', sa.Integer(), server_default='0', nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('webhooks_version')
