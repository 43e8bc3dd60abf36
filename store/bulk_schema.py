"""Schema additions of bulk data (issue 12), on the same `metadata` as store/schema.py (migration 0002_bulk).

Export streams one type in pk order (`WHERE res_type = ? ORDER BY pk`). With only (res_type, last_updated)
indexed, SQLite sorted the whole type first (EXPLAIN QUERY PLAN: "USE TEMP B-TREE FOR ORDER BY"), and the keyset
pages the export used before sorted it again for every page; (res_type, pk) serves the order straight from the
index.
"""
from __future__ import annotations

from sqlalchemy import Index

from store.schema import resources

ix_resources_type_pk = Index("ix_resources_type_pk", resources.c.res_type, resources.c.pk)
