"""initial schema: resources, versions, patient state, search indexes, audit

Revision ID: 0001
Revises: 
Create Date: 2026-12-01 19:57:43.034802
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('recorded', sa.BigInteger(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_recorded', ['recorded'], unique=False)

    op.create_table('patient_state',
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('changed_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('patient_id')
    )
    with op.batch_alter_table('patient_state', schema=None) as batch_op:
        batch_op.create_index('ix_patient_state_changed', ['changed_at'], unique=False)

    op.create_table('resources',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('last_updated', sa.BigInteger(), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('res_type', 'res_id', name='uq_resources_type_id')
    )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index('ix_resources_patient', ['patient_id', 'res_type'], unique=False)
        batch_op.create_index('ix_resources_type_updated', ['res_type', 'last_updated'], unique=False)

    op.create_table('audit_event_patients',
    sa.Column('event_seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['event_seq'], ['audit_events.seq'], )
    )
    with op.batch_alter_table('audit_event_patients', schema=None) as batch_op:
        batch_op.create_index('ix_audit_patient', ['patient_id', 'event_seq'], unique=False)

    op.create_table('idx_date',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('low', sa.BigInteger(), nullable=False),
    sa.Column('high', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['resources.pk'], )
    )
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_idx_date_res', ['res_pk'], unique=False)
        batch_op.create_index('ix_idx_date_res_type_param_high', ['res_type', 'param', 'high'], unique=False)
        batch_op.create_index('ix_idx_date_res_type_param_low', ['res_type', 'param', 'low'], unique=False)

    op.create_table('idx_reference',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=255), nullable=True),
    sa.Column('target_url', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['res_pk'], ['resources.pk'], )
    )
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.create_index('ix_idx_reference_res', ['res_pk'], unique=False)
        batch_op.create_index('ix_idx_reference_res_type_param_target_url', ['res_type', 'param', 'target_url'], unique=False)
        batch_op.create_index('ix_idx_reference_target_id_target_type_param_res_type', ['target_id', 'target_type', 'param', 'res_type'], unique=False)

    op.create_table('idx_string',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('value_norm', sa.String(length=255), nullable=False),
    sa.Column('value_exact', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['resources.pk'], )
    )
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_idx_string_res', ['res_pk'], unique=False)
        batch_op.create_index('ix_idx_string_res_type_param_value_exact', ['res_type', 'param', 'value_exact'], unique=False)
        batch_op.create_index('ix_idx_string_res_type_param_value_norm', ['res_type', 'param', 'value_norm'], unique=False)
    if op.get_context().dialect.name == "postgresql":
        # Prefix searches (name=smi -> LIKE 'smi%') use a btree only with the pattern operator class under a
        # non-C collation; SQLite's GLOB already uses the plain index.
        op.create_index('ix_idx_string_pattern', 'idx_string', ['res_type', 'param', 'value_norm'], unique=False,
                        postgresql_ops={'value_norm': 'varchar_pattern_ops'})

    op.create_table('idx_token',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('system', sa.String(length=255), nullable=False),
    sa.Column('code', sa.String(length=255), nullable=False),
    sa.Column('text', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['res_pk'], ['resources.pk'], )
    )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_idx_token_res', ['res_pk'], unique=False)
        batch_op.create_index('ix_idx_token_res_type_param_code_system', ['res_type', 'param', 'code', 'system'], unique=False)
        batch_op.create_index('ix_idx_token_res_type_param_text', ['res_type', 'param', 'text'], unique=False)

    op.create_table('idx_uri',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['resources.pk'], )
    )
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.create_index('ix_idx_uri_res', ['res_pk'], unique=False)
        batch_op.create_index('ix_idx_uri_res_type_param_value', ['res_type', 'param', 'value'], unique=False)

    op.create_table('resource_versions',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('last_updated', sa.BigInteger(), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['res_pk'], ['resources.pk'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('res_pk', 'version', name='uq_versions_res_version')
    )
    with op.batch_alter_table('resource_versions', schema=None) as batch_op:
        batch_op.create_index('ix_versions_type_updated', ['res_type', 'last_updated'], unique=False)
        batch_op.create_index('ix_versions_updated', ['last_updated'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('resource_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_versions_updated')
        batch_op.drop_index('ix_versions_type_updated')

    op.drop_table('resource_versions')
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_uri_res_type_param_value')
        batch_op.drop_index('ix_idx_uri_res')

    op.drop_table('idx_uri')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_res_type_param_text')
        batch_op.drop_index('ix_idx_token_res_type_param_code_system')
        batch_op.drop_index('ix_idx_token_res')

    op.drop_table('idx_token')
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_string_res_type_param_value_norm')
        batch_op.drop_index('ix_idx_string_res_type_param_value_exact')
        batch_op.drop_index('ix_idx_string_res')

    op.drop_table('idx_string')
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_reference_target_id_target_type_param_res_type')
        batch_op.drop_index('ix_idx_reference_res_type_param_target_url')
        batch_op.drop_index('ix_idx_reference_res')

    op.drop_table('idx_reference')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_date_res_type_param_low')
        batch_op.drop_index('ix_idx_date_res_type_param_high')
        batch_op.drop_index('ix_idx_date_res')

    op.drop_table('idx_date')
    with op.batch_alter_table('audit_event_patients', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_patient')

    op.drop_table('audit_event_patients')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index('ix_resources_type_updated')
        batch_op.drop_index('ix_resources_patient')

    op.drop_table('resources')
    with op.batch_alter_table('patient_state', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_state_changed')

    op.drop_table('patient_state')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_recorded')

    op.drop_table('audit_events')

