"""Rows for the search tests, written as the store's write path writes them (resources row, then write_index).

The engines come from the shared `db_engine` fixture of tests/conftest.py (SQLite and PostgreSQL).
"""
from __future__ import annotations

import json
import time

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from store import indexing
from store.schema import INDEX_TABLES, resources


def store(conn: Connection, resource: dict, patient_id: str | None = None, last_updated: int | None = None) -> int:
    """Insert or replace a resource's current row and its index rows, as the write path does."""
    stamp = last_updated if last_updated is not None else int(time.time() * 1000)
    row = conn.execute(select(resources.c.pk, resources.c.version).where(
        resources.c.res_type == resource["resourceType"], resources.c.res_id == resource["id"])).first()
    values = {"deleted": False, "last_updated": stamp, "patient_id": patient_id, "body": json.dumps(resource)}
    if row is None:
        pk = conn.execute(insert(resources).values(res_type=resource["resourceType"], res_id=resource["id"], version=1,
                                                   **values).returning(resources.c.pk)).scalar_one()
    else:
        pk = row.pk
        conn.execute(update(resources).where(resources.c.pk == pk).values(version=row.version + 1, **values))
    indexing.write_index(conn, pk, resource, patient_id)
    return pk


def remove(conn: Connection, rtype: str, rid: str) -> None:
    pk = conn.execute(select(resources.c.pk).where(resources.c.res_type == rtype, resources.c.res_id == rid)).scalar_one()
    conn.execute(update(resources).where(resources.c.pk == pk).values(deleted=True, body=None))
    indexing.write_index(conn, pk, None, None)


def index_count(conn: Connection, pk: int) -> int:
    return sum(len(conn.execute(select(t.c.res_pk).where(t.c.res_pk == pk)).all()) for t in INDEX_TABLES.values())
