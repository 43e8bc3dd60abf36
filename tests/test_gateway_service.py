"""The gateway's service endpoints: mapping over HTTP, schema, CapabilityStatement, health."""
from __future__ import annotations

import json

import jsonschema

from case_files import load_case
from gateway_setup import api_keys_config, authorised_client


def test_post_case_returns_the_transaction_bundle(client, seed_case):
    _, case = seed_case
    response = client.post("/cases", data=json.dumps(case), content_type="application/json")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    bundle = response.get_json()
    assert bundle["type"] == "transaction" and len(bundle["entry"]) > 30


def test_schema_endpoint_publishes_a_schema_the_seed_cases_satisfy(client, seed_case):
    _, case = seed_case
    response = client.get("/cases/schema")
    assert response.status_code == 200
    jsonschema.validate(case, response.get_json(force=True))


def test_metadata_is_a_capability_statement(client):
    body = client.get("/metadata").get_json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"


def test_healthz_reports_the_database_and_redis(client):
    body = client.get("/healthz").get_json()
    assert body == {"status": "ok", "database": "up", "databaseEngine": "sqlite", "redis": "up", "redisMode": "configured"}


def test_in_process_mode_still_maps_cases(monkeypatch):
    """With no Redis anywhere the gateway falls back to fakeredis and the mapping endpoints still work."""
    from service import create_app, redis_conn

    monkeypatch.setattr(redis_conn, "_answers", lambda url: False)
    monkeypatch.setattr(redis_conn, "start_private_redis", lambda: None)
    app = create_app({"REDIS_URL": None, "API_KEYS": api_keys_config()})
    assert app.extensions["redis_mode"] == "in-process"
    response = authorised_client(app).post("/cases", data=json.dumps(load_case("case1-vipoma")), content_type="application/json")
    assert response.status_code == 200


def test_capability_statement_lists_what_is_really_served(client):
    from mappings.fhir_validation import resource_issues

    body = client.get("/metadata").get_json()
    assert resource_issues(body) == []
    by_type = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert {"search-type"} <= {i["code"] for i in by_type["Procedure"]["interaction"]}
    assert {p["name"] for p in by_type["Observation"]["searchParam"]} >= {"subject", "code", "date", "_lastUpdated", "identifier"}
    assert by_type["Patient"]["operation"][0]["name"] == "everything"
    for rtype, resource in by_type.items():
        if any(i["code"] == "search-type" for i in resource["interaction"]):
            assert client.get(f"/{rtype}?_count=1").status_code == 200, rtype


def test_without_a_local_redis_a_private_redis_server_is_started(monkeypatch):
    """Embedded defaults, second fallback: no REDIS_URL, nothing on localhost:6379, a redis-server binary."""
    import shutil

    import pytest
    from service import redis_conn

    if not shutil.which("redis-server"):
        pytest.skip("needs the redis-server binary")
    monkeypatch.setattr(redis_conn, "LOCAL_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    client, mode, url = redis_conn.connect(None)
    assert mode == "private" and url.startswith("redis://127.0.0.1:") and client.ping()
