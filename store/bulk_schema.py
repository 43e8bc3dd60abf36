"""Schema additions of bulk data (issue 12), on the same `metadata` as store/schema.py (migration 0002_bulk).

Export pages through one type by a keyset on pk (`WHERE res_type = ? AND pk > ? ORDER BY pk LIMIT n`). With only
(res_type, last_updated) indexed, SQLite sorted the whole type again for every page (EXPLAIN QUERY PLAN: "USE
TEMP B-TREE FOR ORDER BY"), so a type of n rows cost O(n^2 / page) to export; (res_type, pk) serves each page
straight from the index.
"""
from __future__ import annotations

from sqlalchemy import Index

from store.schema import resources

ix_resources_type_pk = Index("ix_resources_type_pk", resources.c.res_type, resources.c.pk)
