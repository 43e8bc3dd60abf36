"""Issue 15, "nothing an attacker sends can cost more than it should": the per-request bounds found unbounded or
too loose when re-probing (included resources per page, import manifests, bulk jobs per client, narrative text)."""
from __future__ import annotations

import json

import pytest
from gateway_setup import gateway_config

from service.auth import key_hash

ASYNC = {"Prefer": "respond-async"}


def _patient_with(client, observations: int, conditions: int) -> None:
    entries = [{"resource": {"resourceType": "Patient", "id": "cost-p"}, "request": {"method": "PUT", "url": "Patient/cost-p"}}]
    for n in range(observations):
        entries.append({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"o{n}"},
                                     "subject": {"reference": "Patient/cost-p"}}, "request": {"method": "POST", "url": "Observation"}})
    for n in range(conditions):
        entries.append({"resource": {"resourceType": "Condition", "code": {"text": f"c{n}"}, "subject": {"reference": "Patient/cost-p"}},
                        "request": {"method": "POST", "url": "Condition"}})
    answer = client.post("/Bundle", data=json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
                         content_type="application/fhir+json")
    assert answer.status_code == 200, answer.get_json()


def test_included_resources_are_bounded_per_page_in_total_not_per_item(store_client):
    from store.search import MAX_INCLUDED

    _patient_with(store_client, 700, 700)
    bundle = store_client.get("/Patient?_id=cost-p&_revinclude=Observation:subject&_revinclude=Condition:subject"
                              "&_revinclude=Observation:subject").get_json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("match") == 1 and modes.count("include") == MAX_INCLUDED  # 1,400 before
    outcome = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome")
    assert outcome["issue"][0]["code"] == "too-costly" and outcome["issue"][0]["severity"] == "warning"
    within = store_client.get("/Patient?_id=cost-p&_revinclude=Condition:subject").get_json()
    assert [e["search"]["mode"] for e in within["entry"]].count("include") == 700
    assert all(e["search"]["mode"] != "outcome" for e in within["entry"])


def test_an_import_manifest_with_too_many_urls_gets_400(client):
    manifest = {"input": [{"type": "Patient", "url": f"https://example.org/Patient.{n:05d}.ndjson"} for n in range(1001)]}
    answer = client.post("/$import", data=json.dumps(manifest), content_type="application/fhir+json", headers=ASYNC)
    assert answer.status_code == 400 and answer.get_json()["issue"][0]["code"] == "too-costly"


@pytest.fixture
def two_clients(redis_url, redis_client, sqlite_url):
    from service import create_app

    keys = [{"client": name, "sha256": key_hash(f"key-{name}"), "scopes": ["system/*.read", "system/*.write"]}
            for name in ("exporter", "neighbour")]
    app = create_app(gateway_config(redis_url, sqlite_url, API_KEYS=json.dumps(keys), BULK_MAX_JOBS_PER_CLIENT=3))
    clients = {}
    for name in ("exporter", "neighbour"):
        clients[name] = app.test_client()
        clients[name].environ_base["HTTP_X_API_KEY"] = f"key-{name}"
    return clients


def test_bulk_jobs_per_client_are_bounded_and_a_cancelled_one_frees_its_place(two_clients):
    exporter, neighbour = two_clients["exporter"], two_clients["neighbour"]
    started = [exporter.get("/$export", headers=ASYNC) for _ in range(3)]  # no worker runs: they stay queued
    assert [a.status_code for a in started] == [202] * 3
    refused = exporter.get("/Patient/$export", headers=ASYNC)
    assert refused.status_code == 429 and refused.get_json()["issue"][0]["code"] == "throttled" and refused.headers["Retry-After"]
    upload = exporter.post("/$import", data=b'{"resourceType":"Patient","id":"x"}\n', content_type="application/fhir+ndjson",
                           headers=ASYNC)
    assert upload.status_code == 429  # refused before the upload is spooled
    assert neighbour.get("/$export", headers=ASYNC).status_code == 202  # another client is not affected
    status_url = started[0].headers["Content-Location"].split("localhost", 1)[1]
    assert exporter.delete(status_url).status_code == 202
    assert exporter.get("/$export", headers=ASYNC).status_code == 202


@pytest.mark.parametrize("text, code", [
    ("A 50-year-old woman. " * 2400, "too-long"),                       # 50,400 characters
    ("A 50-year-old woman with " + "(" * 501 + " diarrhoea.", "too-costly"),  # 8,000 '(' took 56 s in spaCy
])
def test_narrative_text_over_the_bounds_is_refused_before_extraction(client, text, code):
    answer = client.post("/cases/$extract", data=text.encode(), content_type="text/plain")
    assert answer.status_code == 413 and answer.get_json()["issue"][0]["code"] == code


def _manifest(*urls: str) -> str:
    return json.dumps({"input": [{"type": "Patient", "url": url} for url in urls]})


@pytest.fixture
def production_client(redis_url, redis_client, sqlite_url):
    """A gateway listening on all interfaces, as in production (loopback is then someone else's service)."""
    from gateway_setup import authorised_client
    from service import create_app

    return lambda **config: authorised_client(create_app(gateway_config(redis_url, sqlite_url, GATEWAY_HOST="0.0.0.0", **config)))


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/iam.ndjson", "http://127.0.0.1:8090/fhir/Patient.ndjson",
                                 "http://10.1.2.3/Patient.ndjson", "http://[::1]/Patient.ndjson", "http://0.0.0.0/x.ndjson"])
def test_import_urls_naming_internal_addresses_are_refused(production_client, url):
    answer = production_client().post("/$import", data=_manifest(url), content_type="application/fhir+json", headers=ASYNC)
    assert answer.status_code == 403, answer.get_json()
    issue = answer.get_json()["issue"][0]
    assert issue["code"] == "forbidden" and issue["expression"] == ["input[0].url"]


def test_import_urls_of_public_or_listed_hosts_are_accepted(production_client):
    public = production_client().post("/$import", data=_manifest("http://93.184.215.14/Patient.ndjson"),
                                      content_type="application/fhir+json", headers=ASYNC)
    assert public.status_code == 202
    listed = production_client(BULK_IMPORT_HOSTS="files.hospital.internal, 10.1.2.3")
    assert listed.post("/$import", data=_manifest("https://files.hospital.internal/a.ndjson", "http://10.1.2.3/b.ndjson"),
                       content_type="application/fhir+json", headers=ASYNC).status_code == 202
    assert listed.post("/$import", data=_manifest("http://93.184.215.14/Patient.ndjson"),
                       content_type="application/fhir+json", headers=ASYNC).status_code == 403  # the list is exclusive


def test_an_import_manifest_naming_many_hosts_is_refused_before_any_lookup(client):
    urls = [f"https://h{n}.example.org/Patient.ndjson" for n in range(11)]
    answer = client.post("/$import", data=_manifest(*urls), content_type="application/fhir+json", headers=ASYNC)
    assert answer.status_code == 400 and answer.get_json()["issue"][0]["code"] == "too-costly"


def test_a_gateway_announcing_a_public_base_url_refuses_loopback_imports(redis_url, redis_client, sqlite_url):
    from gateway_setup import authorised_client
    from service import create_app

    client = authorised_client(create_app(gateway_config(redis_url, sqlite_url, BASE_URL="https://fhir.example.org")))
    answer = client.post("/$import", data=_manifest("http://127.0.0.1:8090/Patient.ndjson"), content_type="application/fhir+json",
                         headers=ASYNC)
    assert answer.status_code == 403
