"""The `db_engine` fixture for the search tests: SQLite (a temp file) and PostgreSQL (own database), emptied per test.

Until tests/conftest.py carries the shared fixture of the same name; the search tests import this one.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    insert,
    select,
    text,
    update,
)

from store import indexing
from store.schema import INDEX_TABLES, metadata, resources

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DB = "gateway_test_search"


def _postgres_engine() -> Engine:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": PG_DB}).first():
                conn.execute(text(f'CREATE DATABASE "{PG_DB}"'))
    except Exception as exc:  # noqa: BLE001 - the reason is reported, the engine is skipped
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    finally:
        admin.dispose()
    engine = create_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DB)
    metadata.drop_all(engine)
    return engine


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def _session_engine(request, tmp_path_factory) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('search') / 'store.db'}")
    else:
        engine = _postgres_engine()
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db_engine(_session_engine: Engine) -> Engine:
    with _session_engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))
    return _session_engine


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
