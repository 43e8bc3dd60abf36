"""Access control: JWTs and hashed API keys, SMART-style scopes, rate limits, and the audit trail."""
from __future__ import annotations

import json
import time

import jwt
import pytest
from bundles import stored_patient_id
from case_files import load_case
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sqlalchemy import select

from service.apikeys import create_key, revoke_client
from service.auth import _key_cache, key_hash
from store.schema import api_keys

ISSUER, AUDIENCE = "https://idp.example.org", "oncology-gateway"


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    jwks = {"keys": [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa-1", "alg": "RS256", "use": "sig"},
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1", "alg": "ES384", "use": "sig"},
    ]}
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return {"path": str(path), "rsa": rsa_key, "ec": ec_key}


@pytest.fixture
def secured(redis_url, redis_client, signing_keys):
    from service import create_app

    app = create_app({"REDIS_URL": redis_url, "TESTING": True, "JWT_JWKS_FILE": signing_keys["path"], "JWT_ISSUER": ISSUER,
                      "JWT_AUDIENCE": AUDIENCE, "API_KEYS": json.dumps([{"client": "registry", "sha256": key_hash("registry-key"),
                                                                          "scopes": ["system/Procedure.read"]}]),
                      "RATE_LIMIT": "1000/minute"})
    return app


def token(keys, scope: str, alg: str = "RS256", **overrides) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ehr-a", "exp": int(time.time()) + 300, "scope": scope, **overrides}
    key, kid = (keys["rsa"], "rsa-1") if alg == "RS256" else (keys["ec"], "ec-1")
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def _store(app, keys) -> str:
    response = app.test_client().post("/cases?store=true", data=json.dumps(load_case("case1-vipoma")), content_type="application/json",
                                      headers=bearer(token(keys, "system/*.write")))
    assert response.status_code == 200
    return stored_patient_id(response.get_json())


def test_public_endpoints_need_no_credentials(secured):
    client = secured.test_client()
    for path in ("/healthz", "/metadata", "/openapi.yaml"):
        assert client.get(path).status_code == 200


def test_missing_or_invalid_credentials_get_401_with_operation_outcome(secured, signing_keys):
    client = secured.test_client()
    for headers in ({}, bearer("not-a-key"), bearer(token(signing_keys, "system/*.read", exp=int(time.time()) - 10)),
                    bearer(token(signing_keys, "system/*.read", aud="someone-else")),
                    bearer(token(signing_keys, "system/*.read", iss="https://evil.example.org"))):
        response = client.get("/Procedure", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["issue"][0]["code"] == "login" and "Bearer" in response.headers["WWW-Authenticate"]


def test_tampered_token_is_rejected(secured, signing_keys):
    forged = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60, "scope": "admin"},
                        rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256", headers={"kid": "rsa-1"})
    assert secured.test_client().get("/Procedure", headers=bearer(forged)).status_code == 401


@pytest.mark.parametrize("alg", ["RS256", "ES384"])
def test_valid_jwt_with_scope_is_allowed(secured, signing_keys, alg):
    assert secured.test_client().get("/Procedure", headers=bearer(token(signing_keys, "system/Procedure.read", alg))).status_code == 200


def test_missing_scope_gets_403(secured, signing_keys):
    client = secured.test_client()
    read_only = bearer(token(signing_keys, "system/*.read"))
    response = client.post("/Bundle", data="{}", content_type="application/fhir+json", headers=read_only)
    assert response.status_code == 403 and response.get_json()["issue"][0]["code"] == "forbidden"
    assert client.get("/Condition", headers=bearer(token(signing_keys, "system/Procedure.read"))).status_code == 403
    assert client.get("/AuditEvent", headers=read_only).status_code == 403


def test_api_keys_are_checked_by_hash_from_config_and_from_the_key_table(secured, redis_client):
    client = secured.test_client()
    assert client.get("/Procedure", headers={"X-API-Key": "registry-key"}).status_code == 200
    assert client.get("/Condition", headers={"X-API-Key": "registry-key"}).status_code == 403
    raw = create_key(secured.extensions["store"], "ops", ["admin"])
    with secured.extensions["store"].connect() as conn:
        stored = [tuple(row) for row in conn.execute(select(api_keys))]
    assert stored and raw not in repr(stored) and key_hash(raw) in repr(stored)
    assert client.get("/AuditEvent", headers=bearer(raw)).status_code == 200
    redis_client.flushdb()  # keys are not a cache: a Redis flush (or outage) locks nobody out
    assert client.get("/AuditEvent", headers=bearer(raw)).status_code == 200
    revoke_client(secured.extensions["store"], "ops")
    assert client.get("/AuditEvent", headers=bearer(raw)).status_code == 200  # remembered up to KEY_CACHE_SECONDS
    _key_cache.clear()
    assert client.get("/AuditEvent", headers=bearer(raw)).status_code == 401


def test_rate_limit_per_client_gives_429_with_operation_outcome(redis_url, redis_client):
    from service import create_app

    app = create_app({"REDIS_URL": redis_url, "TESTING": True, "RATE_LIMIT": "3/minute",
                      "API_KEYS": json.dumps([{"client": "a", "sha256": key_hash("key-a"), "scopes": ["system/*.read"]},
                                              {"client": "b", "sha256": key_hash("key-b"), "scopes": ["system/*.read"]}])})
    client = app.test_client()
    statuses = [client.get("/Procedure", headers={"X-API-Key": "key-a"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/Procedure", headers={"X-API-Key": "key-a"})
    assert limited.get_json()["resourceType"] == "OperationOutcome" and "Retry-After" in limited.headers
    assert client.get("/Procedure", headers={"X-API-Key": "key-b"}).status_code == 200


def test_every_patient_read_and_write_is_audited(secured, signing_keys):
    pid = _store(secured, signing_keys)
    client = secured.test_client()
    client.get(f"/Patient/{pid}/$everything", headers={**bearer(token(signing_keys, "system/*.read", sub="chart-app")), "X-Request-ID": "req-12345678"})
    events = client.get(f"/AuditEvent?patient={pid}", headers=bearer(token(signing_keys, "admin"))).get_json()["entry"]
    read, write = events[0]["resource"], events[1]["resource"]
    assert read["action"] == "E" and read["agent"][0]["who"]["identifier"]["value"] == "chart-app" and read["outcome"] == "0"
    assert {"reference": f"Patient/{pid}"} in [e["what"] for e in read["entity"]]
    assert any(e["what"].get("identifier", {}).get("value") == "req-12345678" for e in read["entity"])
    assert write["agent"][0]["who"]["identifier"]["value"] == "ehr-a"


def test_operator_views_need_the_admin_scope(secured, signing_keys):
    client = secured.test_client()
    admin, reader = bearer(token(signing_keys, "admin")), bearer(token(signing_keys, "system/*.read"))
    for path in ("/rq/", "/metrics", "/AuditEvent"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=reader).status_code == 403
        assert client.get(path, headers=admin).status_code == 200, path
    assert client.get("/docs/").status_code == 200  # the API reference is public, like /openapi.yaml
