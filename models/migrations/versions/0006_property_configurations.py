"""property configurations: which of an integration's PMS properties pmsq writes for

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pmsq.models.base


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('property_configurations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('integration_id', sa.String(length=36), nullable=False),
    sa.Column('property_id', sa.String(length=200), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', pmsq.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pmsq.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['integration_id'], ['integrations.id'], name=op.f('fk_property_configurations_integration_id_integrations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_property_configurations')),
    sa.UniqueConstraint('integration_id', 'property_id', name=op.f('uq_property_configurations_integration_id'))
    )
    with op.batch_alter_table('property_configurations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_property_configurations_integration_id'), ['integration_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('property_configurations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_property_configurations_integration_id'))

    op.drop_table('property_configurations')
