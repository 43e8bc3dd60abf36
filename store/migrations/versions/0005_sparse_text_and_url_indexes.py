"""partial indexes for the token display text and the reference URL: only rows that have one

Most token rows have no display text (a status code) and most reference rows no URL (a relative reference):
their indexes took an entry for every row, which no search can find by that column (store/schema.py,
where_not_null). Every search of either column compares it, which both engines' planners read as NOT NULL.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# (index, table, columns, the column the partial index requires)
SPARSE = (("ix_idx_token_res_type_param_text", "idx_token", ["res_type", "param", "text"], "text"),
          ("ix_idx_reference_res_type_param_target_url", "idx_reference", ["res_type", "param", "target_url"], "target_url"))


def upgrade() -> None:
    for name, table, columns, column in SPARSE:
        op.drop_index(name, table_name=table)
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, table, columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, table, columns, _ in SPARSE:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
