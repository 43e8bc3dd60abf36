"""out of Redis: the sync bookkeeping (id maps, baselines, watermarks, conflicts) and the API keys

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sync_ids',
        sa.Column('upstream', sa.String(length=64), nullable=False),
        sa.Column('res_type', sa.String(length=64), nullable=False),
        sa.Column('local_id', sa.String(length=64), nullable=False),
        sa.Column('upstream_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('upstream', 'res_type', 'local_id'),
    )
    op.create_index('ix_sync_ids_upstream_id', 'sync_ids', ['upstream', 'res_type', 'upstream_id'])
    op.create_table(
        'sync_baselines',
        sa.Column('upstream', sa.String(length=64), nullable=False),
        sa.Column('ref', sa.String(length=130), nullable=False),
        sa.Column('upstream_version', sa.String(length=64), nullable=False),
        sa.Column('local_hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('upstream', 'ref'),
    )
    op.create_table(
        'sync_watermarks',
        sa.Column('upstream', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('value', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('upstream', 'name'),
    )
    op.create_table(
        'sync_conflicts',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('upstream', sa.String(length=64), nullable=False),
        sa.Column('resource', sa.String(length=130), nullable=False),
        sa.Column('patient_id', sa.String(length=64), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('detected_at', sa.BigInteger(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sync_conflicts_status', 'sync_conflicts', ['status', 'upstream', 'detected_at'])
    op.create_table(
        'api_keys',
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('client', sa.String(length=200), nullable=False),
        sa.Column('scopes', sa.Text(), nullable=False),
        sa.Column('created', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('digest'),
    )
    op.create_index('ix_api_keys_client', 'api_keys', ['client'])


def downgrade() -> None:
    op.drop_index('ix_api_keys_client', table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_index('ix_sync_conflicts_status', table_name='sync_conflicts')
    op.drop_table('sync_conflicts')
    op.drop_table('sync_watermarks')
    op.drop_table('sync_baselines')
    op.drop_index('ix_sync_ids_upstream_id', table_name='sync_ids')
    op.drop_table('sync_ids')
