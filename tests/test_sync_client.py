"""The upstream HTTP client and its configuration, against the real sekmet server (directly, or through the
fault-injecting proxy for answers a real server does not give on demand: 429 + Retry-After, 503)."""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fault_proxy import FaultProxy
from workers.errors import AuthFailed, ConfigError, UnknownUpstream, UpstreamRejected, UpstreamUnavailable
from workers.fhir_client import ClientSettings, FhirClient, retry_after_seconds
from workers.upstreams import Upstream, load_upstreams, resolve

FAST = ClientSettings(connect_timeout=1, read_timeout=10, attempts=3, backoff=0.01, backoff_cap=0.05, retry_after_cap=5)


def client_for(base_url: str, auth: dict | None = None, settings: ClientSettings = FAST) -> tuple[FhirClient, list[float]]:
    slept: list[float] = []
    return FhirClient(Upstream("test", base_url, auth or {"type": "none"}), settings, sleep=slept.append), slept


def test_paging_follows_next_links_as_given(fhir_isolated):
    entries = [{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"o{i}"}},
                "request": {"method": "POST", "url": "Observation"}} for i in range(25)]
    fhir_isolated.request("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    fhir, _ = client_for(fhir_isolated.base_url)
    pages = list(fhir.pages("Observation", {"_count": "10"}))
    assert [len(p["entry"]) for p in pages] == [10, 10, 5]
    assert fhir.requests_made == 3
    assert len({e["resource"]["id"] for p in pages for e in p["entry"]}) == 25


def test_429_retry_after_seconds_and_http_date_are_honoured(fhir_isolated):
    with FaultProxy(fhir_isolated.base_url) as proxy:
        when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3), usegmt=True)
        proxy.fail_next(1, 429, {"Retry-After": "2"})
        proxy.fail_next(1, 429, {"Retry-After": when})
        fhir, slept = client_for(proxy.base_url)
        assert fhir.get("Patient")["resourceType"] == "Bundle"
        assert proxy.count() == 3 and fhir.requests_made == 3
        assert slept[0] == 2 and 1 <= slept[1] <= 3


def test_retry_after_is_capped_and_5xx_backs_off_exponentially(fhir_isolated):
    with FaultProxy(fhir_isolated.base_url) as proxy:
        proxy.fail_next(1, 429, {"Retry-After": "3600"})
        proxy.fail_next(1, 503)
        fhir, slept = client_for(proxy.base_url)
        fhir.get("Patient")
        assert slept[0] == FAST.retry_after_cap and slept[1] <= FAST.backoff_cap
        proxy.fail_next(3, 503)
        with pytest.raises(UpstreamUnavailable, match="HTTP 503 after 3 attempts"):
            fhir.get("Patient")


def test_connection_refused_is_transient_and_4xx_is_not(fhir_isolated):
    fhir, slept = client_for("http://127.0.0.1:9/fhir")
    with pytest.raises(UpstreamUnavailable, match="ConnectionError"):
        fhir.get("Patient")
    assert fhir.requests_made == 3 and len(slept) == 2 and slept[1] > slept[0]  # exponential
    fhir, _ = client_for(fhir_isolated.base_url)
    with pytest.raises(UpstreamRejected) as info:
        fhir.get("NoSuchType")
    assert info.value.status == 404 and fhir.requests_made == 1


def test_retry_after_parsing():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:05 GMT", now) == 5
    assert retry_after_seconds("Wed, 31 Dec 2025 23:00:00 GMT", now) == 0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.fixture(scope="module")
def secured(fhir_server_factory):
    return fhir_server_factory(tokens=["sekmet-token-1"])


def test_static_bearer_token_from_the_environment(secured, monkeypatch):
    monkeypatch.setenv("HOSPITAL_TOKEN", "sekmet-token-1")
    fhir, _ = client_for(secured.base_url, {"type": "bearer", "token_env": "HOSPITAL_TOKEN"})
    assert fhir.get("Patient")["resourceType"] == "Bundle"
    monkeypatch.setenv("HOSPITAL_TOKEN", "wrong")
    with pytest.raises(AuthFailed):
        fhir.get("Patient")
    assert fhir.requests_made == 3  # one good call, then one refused call and its single retry


class TokenEndpoint:
    """A SMART token endpoint on loopback: checks the signed client assertion, then hands out tokens."""

    def __init__(self, public_key, tokens: list[str]):
        self.public_key, self.tokens, self.assertions = public_key, list(tokens), []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
                claims = jwt.decode(form["client_assertion"], endpoint.public_key, algorithms=["RS384", "ES384"],
                                    audience=endpoint.url)
                endpoint.assertions.append((form, claims, jwt.get_unverified_header(form["client_assertion"])))
                body = json.dumps({"access_token": endpoint.tokens.pop(0), "token_type": "bearer", "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_smart_backend_services_token_is_refreshed_on_401(secured, monkeypatch, alg):
    key = rsa.generate_private_key(65537, 2048) if alg == "RS384" else ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    monkeypatch.setenv("HOSPITAL_KEY", pem.decode())
    endpoint = TokenEndpoint(key.public_key(), ["expired-token", "sekmet-token-1"])
    try:
        fhir, _ = client_for(secured.base_url, {"type": "smart-backend", "client_id": "gateway", "alg": alg, "kid": "k1",
                                                "private_key_env": "HOSPITAL_KEY", "token_url": endpoint.url,
                                                "scope": "system/*.read"})
        assert fhir.get("Patient")["resourceType"] == "Bundle"  # first token refused (401), refreshed, retried
        assert len(endpoint.assertions) == 2 and fhir.requests_made == 2
        form, claims, header = endpoint.assertions[0]
        assert form["grant_type"] == "client_credentials" and form["scope"] == "system/*.read"
        assert claims["iss"] == claims["sub"] == "gateway" and header == {"alg": alg, "kid": "k1", "typ": "JWT"}
    finally:
        endpoint.server.shutdown()


def test_upstreams_from_json_or_shortcut():
    env = {"SYNC_UPSTREAMS": json.dumps([
        {"name": "hospital-a", "base_url": "http://a/fhir/", "auth": {"type": "bearer", "token_env": "A_TOKEN"}},
        {"name": "hospital-b", "base_url": "https://b/fhir"}])}
    upstreams = load_upstreams(env)
    assert upstreams["hospital-a"].base_url == "http://a/fhir" and upstreams["hospital-b"].auth == {"type": "none"}
    with pytest.raises(UnknownUpstream, match="several"):
        resolve(None, env)
    with pytest.raises(UnknownUpstream, match="unknown upstream 'c'"):
        resolve("c", env)
    short = load_upstreams({"SYNC_UPSTREAM_URL": "http://x/fhir", "SYNC_UPSTREAM_TOKEN": "s"})
    assert short["default"].auth == {"type": "bearer", "token_env": "SYNC_UPSTREAM_TOKEN"}
    assert resolve(None, {"SYNC_UPSTREAM_URL": "http://x/fhir"}).name == "default"


@pytest.mark.parametrize("raw, message", [
    ("not json", "not JSON"),
    ("[]", "non-empty"),
    ('[{"name": "a", "base_url": "ftp://x"}]', "http"),
    ('[{"name": "a b", "base_url": "http://x"}]', "name"),
    ('[{"name": "a", "base_url": "http://x", "auth": {"type": "bearer", "token": "secret"}}]', "environment only"),
    ('[{"name": "a", "base_url": "http://x", "auth": {"type": "smart-backend", "client_id": "c"}}]', "private_key_env"),
    ('[{"name": "a", "base_url": "http://x"}, {"name": "a", "base_url": "http://y"}]', "duplicate"),
])
def test_bad_upstream_configuration_is_refused(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_upstreams({"SYNC_UPSTREAMS": raw})
