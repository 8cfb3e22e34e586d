"""enum mappings: an integration's own mapping of a vendor's enum values to Propexo's

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pmsq.models.base


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enum_mappings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('integration_id', sa.String(length=36), nullable=False),
    sa.Column('model', sa.String(length=60), nullable=False),
    sa.Column('field', sa.String(length=60), nullable=False),
    sa.Column('mappings', sa.JSON(), nullable=False),
    sa.Column('default_value', sa.String(length=40), nullable=False),
    sa.Column('created_at', pmsq.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pmsq.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['integration_id'], ['integrations.id'], name=op.f('fk_enum_mappings_integration_id_integrations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enum_mappings')),
    sa.UniqueConstraint('integration_id', 'model', 'field', name=op.f('uq_enum_mappings_integration_id'))
    )
    with op.batch_alter_table('enum_mappings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enum_mappings_integration_id'), ['integration_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('enum_mappings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enum_mappings_integration_id'))

    op.drop_table('enum_mappings')
