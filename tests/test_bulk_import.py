"""Bulk import (`POST /$import`) of the vendored Synthea slice (tests/data/bulk/), batch Bundles of the same corpus,
and the reference policy: strict, lenient, urn: references always enforced."""
from __future__ import annotations

import http.server
import json
import threading
from functools import partial

import databases
import pytest
from gateway_setup import authorised_client, gateway_config
from sqlalchemy import func, select
from polling import wait_for
from bulk_helpers import CORPUS, corpus_counts, corpus_files, corpus_lines, finished_import, identifier_map, start_import, two_clients
from sync_helpers import FAST_ENV, kill_hard, start_worker, stop_worker

from store import db
from store.schema import resource_versions, resources

NPI = "http://hl7.org/fhir/sid/us-npi"


def held_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(resources.c.res_type, func.count()).where(resources.c.deleted.is_(False))
                            .group_by(resources.c.res_type))
        return {t: n for t, n in rows}


def version_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(resource_versions)).scalar_one()


def manifest_counts(manifest: dict, key: str) -> dict[str, int]:
    return {o["type"]: o["count"] for o in manifest[key]}


@pytest.fixture
def on_engine(monkeypatch, database_url):
    """In-process jobs (run_jobs) write to the same database as the gateway under test."""
    monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
    return database_url


def test_import_of_the_synthea_slice_in_reverse_order_accepts_every_resource_and_resolves_conditional_references(
        store_client, redis_client, db_engine, on_engine):
    # Reverse order: every Encounter comes before the Practitioner, Location and Organization it names.
    body = "\n".join(reversed(corpus_lines())) + "\n"
    job_id = start_import(store_client, body)
    pending = store_client.get(f"/$import/{job_id}")
    assert pending.status_code == 202 and pending.headers["Retry-After"] and "lines" in pending.headers["X-Progress"]
    manifest = finished_import(store_client, redis_client, job_id)
    assert manifest["error"] == [] and manifest["requiresAccessToken"] is True
    assert manifest_counts(manifest, "output") == corpus_counts()
    assert held_counts(db_engine) == corpus_counts()
    by_identifier = identifier_map()
    encounters = store_client.get("/Encounter?_count=200").get_json()["entry"]
    assert len(encounters) == corpus_counts()["Encounter"]
    for entry in encounters:
        e = entry["resource"]
        refs = [p["individual"]["reference"] for p in e["participant"]] + [e["serviceProvider"]["reference"]] + \
               [loc["location"]["reference"] for loc in e.get("location", [])]
        assert all("?" not in ref for ref in refs), refs
        assert set(refs) <= set(by_identifier.values())
    # Each result file is served to the importing client, one OperationOutcome a line.
    first = manifest["output"][0]["url"].split("localhost", 1)[1]
    lines = store_client.get(first).get_data(as_text=True).splitlines()
    assert len(lines) == manifest["output"][0]["count"] and json.loads(lines[0])["resourceType"] == "OperationOutcome"


def test_encounter_conditional_practitioner_reference_resolves_to_the_practitioner_with_that_npi(client, redis_client, sqlite_url):
    manifest = finished_import(client, redis_client, start_import(client, "\n".join(corpus_lines())))
    assert manifest["error"] == []
    first = json.loads((CORPUS / "Encounter.000.ndjson").read_text().splitlines()[0])
    wanted = first["participant"][0]["individual"]["reference"]
    npi = wanted.split("|", 1)[1]
    stored = client.get(f"/Encounter/{first['id']}").get_json()
    resolved = stored["participant"][0]["individual"]["reference"]
    practitioner = client.get(f"/{resolved}").get_json()
    assert {"system": NPI, "value": npi} in practitioner["identifier"]


def test_re_importing_the_same_files_changes_nothing(client, redis_client, sqlite_url):
    engine = db.engine_for(sqlite_url)
    body = "\n".join(corpus_lines())
    finished_import(client, redis_client, start_import(client, body))
    versions, held = version_count(engine), held_counts(engine)
    again = finished_import(client, redis_client, start_import(client, body))
    assert manifest_counts(again, "output") == corpus_counts() and again["error"] == []
    assert version_count(engine) == versions and held_counts(engine) == held


def test_a_corrupt_line_in_the_middle_is_reported_with_file_and_line_and_everything_else_is_loaded(client, redis_client, sqlite_url):
    lines = corpus_lines()
    middle = len(lines) // 2
    broken = lines[:middle] + ['{"resourceType": "Encounter", "id": "broken", "status": '] + lines[middle:]
    invalid = json.dumps({"resourceType": "Condition", "id": "bad-status", "clinicalStatus": "active",
                          "subject": {"reference": "Patient/x"}})
    manifest = finished_import(client, redis_client, start_import(client, "\n".join(broken + [invalid]), "mixed.ndjson"))
    assert manifest_counts(manifest, "output") == corpus_counts()
    assert held_counts(db.engine_for(sqlite_url)) == corpus_counts()
    errors = {e["type"]: e for e in manifest["error"]}
    assert set(errors) == {"OperationOutcome", "Condition"} and all(e["count"] == 1 for e in errors.values())
    unparsed = json.loads(client.get(errors["OperationOutcome"]["url"].split("localhost", 1)[1]).get_data(as_text=True))
    assert unparsed["issue"][0]["expression"] == [f"mixed.ndjson:{middle + 1}"]
    assert "not JSON" in unparsed["issue"][1]["diagnostics"]
    invalid_outcome = json.loads(client.get(errors["Condition"]["url"].split("localhost", 1)[1]).get_data(as_text=True))
    assert invalid_outcome["issue"][0]["expression"] == [f"mixed.ndjson:{len(broken) + 1}"]


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def file_server():
    """The corpus served over HTTP, as an upstream's bulk export serves its NDJSON files."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files, directory=str(CORPUS)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_import_from_a_parameters_manifest_of_ndjson_urls(client, redis_client, sqlite_url, file_server):
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "input", "part": [{"name": "type", "valueCode": p.name.split(".")[0]},
                                   {"name": "url", "valueUrl": f"{file_server}/{p.name}"}]} for p in corpus_files()]}
    answer = client.post("/$import", data=json.dumps(params), content_type="application/fhir+json",
                         headers={"Prefer": "respond-async"})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    manifest = finished_import(client, redis_client, answer.headers["Content-Location"].split("/$import/")[1])
    assert manifest_counts(manifest, "output") == corpus_counts() and manifest["error"] == []


def test_an_import_status_and_its_files_are_shown_to_its_client_only(redis_url, redis_client, sqlite_url):
    client, other = two_clients(redis_url, sqlite_url, ["system/*.write", "system/*.read"])
    job_id = start_import(client, "\n".join(corpus_lines()[:3]))
    manifest = finished_import(client, redis_client, job_id)
    assert other.get(f"/$import/{job_id}").status_code == 404
    assert other.get(manifest["output"][0]["url"].split("localhost", 1)[1]).status_code == 404


# -- batch Bundles of the same corpus -----------------------------------------------------------------------
def test_batch_bundles_of_puts_targets_first_accept_every_resource_with_literal_references(client, sqlite_url):
    lines = [json.loads(line) for line in corpus_lines()]
    order = ["Organization", "Location", "Practitioner", "PractitionerRole", "Patient", "Encounter"]
    lines.sort(key=lambda r: order.index(r["resourceType"]) if r["resourceType"] in order else len(order))
    for start in range(0, len(lines), 100):
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in lines[start:start + 100]]}
        answer = client.post("/", data=json.dumps(bundle), content_type="application/fhir+json")
        assert answer.status_code == 200
        statuses = [e["response"]["status"] for e in answer.get_json()["entry"]]
        assert all(s.startswith("201") for s in statuses), [e for e in answer.get_json()["entry"] if not e["response"]["status"].startswith("201")][:2]
    assert held_counts(db.engine_for(sqlite_url)) == corpus_counts()
    procedure = next(r for r in lines if r["resourceType"] == "Procedure" and "location" in r)
    stored = client.get(f"/Procedure/{procedure['id']}").get_json()
    assert stored["location"]["reference"] == identifier_map()[procedure["location"]["reference"]]


# -- the reference policy -----------------------------------------------------------------------------------
def _policy_client(redis_url, sqlite_url, policy: str):
    from service import create_app

    databases.empty(db.engine_for(sqlite_url))
    return authorised_client(create_app(gateway_config(redis_url, sqlite_url, REFERENCE_POLICY=policy)))


def _transaction(*resources_: dict, full_urls: list[str] | None = None) -> str:
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {**({"fullUrl": full_urls[i]} if full_urls else {}), "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for i, r in enumerate(resources_)]})


CONDITION = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/not-held"},
             "code": {"text": "pancreatic neuroendocrine tumour"}}


def test_strict_policy_rejects_a_reference_to_a_resource_not_held(redis_url, redis_client, sqlite_url):
    client = _policy_client(redis_url, sqlite_url, "strict")
    answer = client.post("/", data=_transaction(CONDITION), content_type="application/fhir+json")
    assert answer.status_code == 404
    assert "Patient/not-held" in answer.get_json()["issue"][0]["diagnostics"]
    assert client.get("/Condition/c1").status_code == 404


def test_lenient_policy_keeps_the_reference_verbatim_with_a_warning(redis_url, redis_client, sqlite_url):
    client = _policy_client(redis_url, sqlite_url, "lenient")
    answer = client.post("/", data=_transaction(CONDITION), content_type="application/fhir+json")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    issue = answer.get_json()["entry"][0]["response"]["outcome"]["issue"][0]
    assert issue["severity"] == "warning" and "Patient/not-held" in issue["diagnostics"]
    assert client.get("/Condition/c1").get_json()["subject"]["reference"] == "Patient/not-held"


@pytest.mark.parametrize("policy", ["strict", "lenient"])
def test_urn_references_must_resolve_inside_the_bundle_in_both_policies(redis_url, redis_client, sqlite_url, policy):
    client = _policy_client(redis_url, sqlite_url, policy)
    condition = {**CONDITION, "subject": {"reference": "urn:uuid:0b6d3c1e-8a43-4f5c-9f4e-2d1f7f1c0a11"}}
    answer = client.post("/", data=_transaction(condition), content_type="application/fhir+json")
    assert answer.status_code == 400
    assert "matches no fullUrl" in answer.get_json()["issue"][0]["diagnostics"]


def test_a_conditional_reference_that_matches_nothing_fails_the_transaction(client):
    condition = {**CONDITION, "subject": {"reference": "Patient?identifier=urn:oid:2.16.840.1.113883.4.1|000-00-0000"}}
    answer = client.post("/", data=_transaction(condition), content_type="application/fhir+json")
    assert answer.status_code == 404 and "matches no resource" in answer.get_json()["issue"][0]["diagnostics"]


def test_strict_import_loads_a_reverse_ordered_corpus_by_deferring_lines_to_a_later_pass(redis_url, redis_client, sqlite_url):
    client = _policy_client(redis_url, sqlite_url, "strict")
    manifest = finished_import(client, redis_client, start_import(client, "\n".join(reversed(corpus_lines()))))
    assert manifest["error"] == [] and manifest_counts(manifest, "output") == corpus_counts()


def test_strict_import_reports_a_reference_nothing_in_the_input_resolves(redis_url, redis_client, sqlite_url):
    client = _policy_client(redis_url, sqlite_url, "strict")
    manifest = finished_import(client, redis_client, start_import(client, json.dumps(CONDITION), "one.ndjson"))
    assert manifest["output"] == [] and manifest_counts(manifest, "error") == {"Condition": 1}
    outcome = json.loads(client.get(manifest["error"][0]["url"].split("localhost", 1)[1]).get_data(as_text=True))
    assert outcome["issue"][0]["expression"] == ["one.ndjson:1"] and "Patient/not-held" in json.dumps(outcome)


# -- a worker killed mid-import -----------------------------------------------------------------------------
@pytest.mark.faults
def test_a_worker_killed_mid_import_is_resumed_by_the_next_worker_without_duplicates(
        client, redis_client, redis_url, sqlite_url, tmp_path):
    env = {**FAST_ENV, "GATEWAY_BULK_CHUNK": "10"}
    engine = db.engine_for(sqlite_url)
    job_id = start_import(client, "\n".join(corpus_lines()))
    first = start_worker(redis_url, env, tmp_path / "w1.log", "bulk-w1")
    second = None
    try:
        def progressed() -> bool:
            progress = client.get(f"/$import/{job_id}").headers.get("X-Progress", "")
            return progress[:1].isdigit() and int(progress.split()[0]) >= 60
        wait_for(progressed, 120, 0.05, "import progress")
        kill_hard(first)
        done_before = sum(held_counts(engine).values())
        assert done_before < len(corpus_lines())
        second = start_worker(redis_url, env, tmp_path / "w2.log", "bulk-w2")
        wait_for(lambda: client.get(f"/$import/{job_id}").status_code == 200, 180, 0.2, "import resumed and finished")
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
    manifest = client.get(f"/$import/{job_id}").get_json()
    assert manifest_counts(manifest, "output") == corpus_counts() and manifest["error"] == []
    assert held_counts(engine) == corpus_counts()
    # No duplicates: one version per resource, however many chunks were applied twice.
    assert version_count(engine) == len(corpus_lines())
    # The output files were cut back to the checkpoint: one line per imported resource.
    total = sum(len(client.get(o["url"].split("localhost", 1)[1]).get_data(as_text=True).splitlines()) for o in manifest["output"])
    assert total == len(corpus_lines())
