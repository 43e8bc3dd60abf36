"""no foreign keys from resource_versions and the idx_* tables to resources (store/schema.py, RES_PK)

Their rows are written only by store/writes.py, in the transaction of the resource row they name, and resource
rows are never deleted; the constraints guarded nothing and cost ~30 us per resource ingested on PostgreSQL.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TABLES = ('resource_versions', 'idx_token', 'idx_string', 'idx_reference', 'idx_date', 'idx_uri')
# SQLite's foreign keys have no name (0001 made them unnamed): batch mode names the reflected ones by this
# convention, so that they can be dropped by name.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _fk_name(table: str) -> str:
    return f"fk_{table}_res_pk_resources"


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        if bind.dialect.name == 'sqlite':
            with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
                batch_op.drop_constraint(_fk_name(table), type_='foreignkey')
            continue
        for fk in sa.inspect(bind).get_foreign_keys(table):  # named by PostgreSQL (<table>_res_pk_fkey)
            if fk['referred_table'] == 'resources':
                op.drop_constraint(fk['name'], table, type_='foreignkey')


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            batch_op.create_foreign_key(_fk_name(table), 'resources', ['res_pk'], ['pk'])
