"""Shared fixtures: a real Redis (own database number, flushed per test) and the gateway app."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from service.redis_conn import start_private_redis

pytest_plugins = ["fhir_server_fixture"]

DATA = Path(__file__).parent / "data"
SEED_CASES = ["case1-vipoma", "case2-insulinoma"]
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


# A test client key with every scope; tests of access control use their own credentials.
TEST_API_KEY = "test-key-all-scopes"
TEST_SCOPES = ["system/*.read", "system/*.write", "admin"]


def api_keys_config() -> str:
    from service.auth import key_hash

    return json.dumps([{"client": "test-suite", "sha256": key_hash(TEST_API_KEY), "scopes": TEST_SCOPES}])


def authorised_client(app):
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = TEST_API_KEY
    return client


@pytest.fixture
def app(redis_url, redis_client):
    from service import create_app

    return create_app({"REDIS_URL": redis_url, "TESTING": True, "API_KEYS": api_keys_config(), "RATE_LIMIT": "100000/minute"})


@pytest.fixture
def client(app):
    return authorised_client(app)


def load_case(name: str) -> dict:
    return json.loads((DATA / name / "input.json").read_text(encoding="utf-8"))


@pytest.fixture(params=SEED_CASES)
def seed_case(request) -> tuple[str, dict]:
    return request.param, load_case(request.param)
