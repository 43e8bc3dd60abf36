"""The request pipeline's shortcuts (service/__init__.py _install_request_pipeline and the modules it calls)
answer exactly as the work they replace: remembered base URLs, label children, Accept answers and API-key
principals, one-pass security headers and the audit's instant spelling."""
from __future__ import annotations

import json
import re

from gateway_setup import authorised_client
from mappings.fhir_vocabulary import instant
from service import audit, auth


def _links(client, **headers) -> list[str]:
    bundle = client.get("/Procedure?_count=1", headers=headers).get_json()
    return [link["url"] for link in bundle["link"]]


def test_remembered_base_urls_still_follow_each_requests_own_host(app):
    client = authorised_client(app)
    own = f"http://{app.config['GATEWAY_HOST']}:{app.config['GATEWAY_PORT']}/"
    for _ in range(2):  # the second round is answered from the remembered bases
        assert all(url.startswith("http://localhost:5000/") for url in _links(client, Host="localhost:5000"))
        assert all(url.startswith("http://127.0.0.1:6000/") for url in _links(client, Host="127.0.0.1:6000"))
        # A non-loopback Host is never followed, remembered or not.
        assert all(url.startswith(own) for url in _links(client, Host="evil.example"))


def test_remembered_base_urls_follow_a_changed_gateway_address(app):
    client = authorised_client(app)
    app.config["GATEWAY_PORT"] = 9090
    assert all(url.startswith(f"http://{app.config['GATEWAY_HOST']}:9090/") for url in _links(client, Host="evil.example"))
    app.config["GATEWAY_PORT"] = 9091
    assert all(url.startswith(f"http://{app.config['GATEWAY_HOST']}:9091/") for url in _links(client, Host="evil.example"))


def _request_count(client, route: str, status: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    pattern = rf'^gateway_requests_total{{method="GET",route="{re.escape(route)}",status="{status}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_request_metrics_count_every_request_of_a_label_set(client):
    before = _request_count(client, "/<rtype>", "200")
    for _ in range(3):
        assert client.get("/Procedure").status_code == 200
    assert _request_count(client, "/<rtype>", "200") == before + 3


def test_an_accept_without_json_is_refused_every_time_and_json_is_served(client):
    for _ in range(2):  # the second answer comes from the remembered parse of the same header
        refused = client.get("/Procedure", headers={"Accept": "application/fhir+xml"})
        assert refused.status_code == 406 and "application/fhir+xml" in refused.get_data(as_text=True)
        assert client.get("/Procedure", headers={"Accept": "application/fhir+json;q=0.9, */*;q=0.1"}).status_code == 200
    assert client.get("/Procedure?_format=xml").status_code == 406
    assert client.get("/Procedure?_format=json", headers={"Accept": "text/html"}).status_code == 200  # _format wins


def test_security_headers_replace_those_a_handler_set_and_are_never_doubled(app):
    from flask import Response

    @app.get("/docs/pipeline-probe")  # under /docs: public, operator policy, no Cache-Control forced
    def probe() -> Response:
        return Response("x", headers={"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "default-src *",
                                      "Referrer-Policy": "unsafe-url"})

    answer = app.test_client().get("/docs/pipeline-probe")
    assert answer.headers.getlist("X-Frame-Options") == ["DENY"]
    assert answer.headers.getlist("Referrer-Policy") == ["no-referrer"]
    assert answer.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert answer.headers.getlist("Content-Security-Policy")[0].startswith("default-src 'self'")
    assert len(answer.headers.getlist("Content-Security-Policy")) == 1 and "Cache-Control" not in answer.headers


def test_answers_behind_authentication_carry_one_no_store(client):
    assert client.get("/Procedure").headers.getlist("Cache-Control") == ["no-store"]


def test_a_stored_key_is_remembered_as_its_principal_until_revoked_and_forgotten(app):
    from service.apikeys import create_key, revoke_client

    raw = create_key(app.extensions["store"], "pipeline-probe", ["system/Procedure.read"])
    client = app.test_client()
    for _ in range(2):  # the second request is authenticated from the remembered Principal
        assert client.get("/Procedure", headers={"X-API-Key": raw}).status_code == 200
        assert client.get("/Condition", headers={"X-API-Key": raw}).status_code == 403  # its scopes, remembered too
    cached = auth._key_cache[auth.key_hash(raw)][1]
    assert cached == auth.Principal("pipeline-probe", frozenset({"system/Procedure.read"}), "api-key")
    revoke_client(app.extensions["store"], "pipeline-probe")
    auth._key_cache.clear()
    assert client.get("/Procedure", headers={"X-API-Key": raw}).status_code == 401


def test_configured_keys_follow_a_changed_setting(app):
    client = app.test_client()
    assert client.get("/Procedure", headers={"X-API-Key": "other-key"}).status_code == 401
    app.config["API_KEYS"] = json.dumps([{"client": "other", "sha256": auth.key_hash("other-key"), "scopes": ["system/*.read"]}])
    assert client.get("/Procedure", headers={"X-API-Key": "other-key"}).status_code == 200


def test_the_audit_spells_instants_as_the_store_does():
    # Around now, second and year boundaries, a leap day, and every millisecond of one second.
    moments = [1_764_936_000_000 + n for n in range(0, 1000)] + [1_735_689_599_999, 1_735_689_600_000, 1_709_164_800_123,
                                                                    951_782_400_000, 0, 4_102_444_799_999]
    for ms in moments + list(reversed(moments)):  # reversed: the remembered second changes back and forth
        assert audit.instant_of(ms) == instant(ms)


def test_generated_request_ids_are_32_hex_digits_and_differ(client):
    ids = {client.get("/Procedure").headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
