"""Test databases: a SQLite file and a PostgreSQL database of this test run, migrated with Alembic, emptied per test.

PostgreSQL is on 127.0.0.1:5432 (TEST_POSTGRES_URL overrides); .ci/run starts it when it is down. A run that
cannot reach it fails rather than skipping, unless TEST_DATABASES=sqlite says to run on SQLite only.
"""
from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import Engine, create_engine, delete, text

from store import db
from store.schema import metadata

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
ENGINES = [e for e in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",") if e]


def create_postgres_database(tag: str) -> str:
    """A fresh database for this run on the test server; its URL."""
    name = f"gateway_test_{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - reported as the reason the run cannot go on
        pytest.fail(f"PostgreSQL at {PG_SERVER} is needed for the store tests ({type(exc).__name__}: {exc}); "
                    "start it, or set TEST_DATABASES=sqlite", pytrace=False)
    finally:
        admin.dispose()
    return f"{PG_SERVER}/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def database_url(kind: str, folder) -> str:
    return f"sqlite:///{folder / 'gateway.sqlite3'}" if kind == "sqlite" else create_postgres_database("run")


def empty(engine: Engine) -> None:
    from store import audit_log

    audit_log.flush(engine)  # the last test's queued read events must not land in the next test's tables
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(delete(table))


def migrated_engine(url: str) -> Engine:
    return db.engine_for(url)
