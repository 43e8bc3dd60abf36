"""Shared fixtures: a real Redis (own database number, flushed per test) and the gateway app."""
from __future__ import annotations

import os
import tempfile
from typing import Iterator

import pytest
import redis

import databases
from case_files import SEED_CASES, load_case
from gateway_setup import authorised_client, gateway_config
from service.redis_conn import start_private_redis
from store import db

pytest_plugins = ["fhir_server_fixture", "sync_helpers", "browser"]  # fixtures of helper modules

# Gateways and workers that tests start without a database URL share one SQLite file of this run, never the repo's.
os.environ.setdefault("GATEWAY_DATA_DIR", tempfile.mkdtemp(prefix="gateway-test-data-"))
TEST_DB = 15


def _test_redis_url() -> str:
    """TEST_REDIS_URL, else the local Redis on database 15, else a private redis-server started for the run."""
    if os.environ.get("TEST_REDIS_URL"):
        return os.environ["TEST_REDIS_URL"]
    url = f"redis://127.0.0.1:6379/{TEST_DB}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        return url
    except (redis.RedisError, OSError):
        private = start_private_redis()
        if private is None:
            pytest.exit("tests need a real Redis: none on localhost:6379 and no redis-server binary", 2)
        return private.rsplit("/", 1)[0] + f"/{TEST_DB}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _test_redis_url()


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session", params=databases.ENGINES)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """One database of each engine for the whole run (migrated once); the store tests run on each."""
    url = databases.database_url(request.param, tmp_path_factory.mktemp(request.param))
    databases.migrated_engine(url)
    yield url
    if request.param == "postgresql":
        from store import audit_log

        audit_log.flush(db.engine_for(url))  # the last tests' queued read events, before the database goes
        db.engine_for(url).dispose()
        databases.drop_postgres_database(url)


@pytest.fixture(scope="session")
def sqlite_url() -> str:
    """The embedded default (SQLite in GATEWAY_DATA_DIR, a temp folder of this run), for tests of the gateway
    that are not about the store: in-process jobs, workers and gateway processes started without a URL use it too."""
    url = db.default_url()
    databases.migrated_engine(url)
    return url


@pytest.fixture
def db_engine(database_url):
    """The store of record on each engine, emptied before the test."""
    engine = db.engine_for(database_url)
    databases.empty(engine)
    return engine


@pytest.fixture
def app(redis_url, redis_client, sqlite_url):
    from service import create_app

    databases.empty(db.engine_for(sqlite_url))
    return create_app(gateway_config(redis_url, sqlite_url))


@pytest.fixture
def store_app(redis_url, redis_client, db_engine, database_url):
    """The gateway on each engine (SQLite, PostgreSQL): for tests of the store through the REST API."""
    from service import create_app

    return create_app(gateway_config(redis_url, database_url))


@pytest.fixture
def store_client(store_app):
    return authorised_client(store_app)


@pytest.fixture
def client(app):
    return authorised_client(app)


@pytest.fixture(params=SEED_CASES)
def seed_case(request) -> tuple[str, dict]:
    return request.param, load_case(request.param)
