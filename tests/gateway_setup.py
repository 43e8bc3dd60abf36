"""How tests configure a gateway: the test API key with every scope, and the app config that uses it."""
from __future__ import annotations

import json

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


def gateway_config(redis_url: str, database_url: str, **extra) -> dict:
    return {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "TESTING": True, "API_KEYS": api_keys_config(),
            "RATE_LIMIT": "100000/minute", **extra}
