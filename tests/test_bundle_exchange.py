"""EHR bundle exchange on the store of record (SQLite and PostgreSQL): round trips, idempotency, all-or-nothing,
batch and collection."""
from __future__ import annotations

import copy
import json

import pytest

from bundles import fact_index, stored_patient_id
from case_files import load_case
from gateway_setup import authorised_client
from store_state import snapshot
from mappings.case_bundle import case_to_bundle


@pytest.fixture
def client(store_client):
    """These are tests of the store: they run on SQLite and on PostgreSQL."""
    return store_client


@pytest.fixture
def strict(client):
    client.application.config["REFERENCE_POLICY"] = "strict"
    return client


def post(client, body, path="/Bundle"):
    return client.post(path, data=json.dumps(body), content_type="application/fhir+json")


def stored(client) -> dict:
    return snapshot(client.application.extensions["store"])


def patient_id(response) -> str:
    return stored_patient_id(response.get_json())


def _strip(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def test_seed_case_round_trips_as_an_ehr_bundle(client, seed_case):
    _, case = seed_case
    bundle = case_to_bundle(case)
    response = post(client, bundle)
    assert response.status_code == 200
    body = response.get_json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * len(bundle["entry"])
    pid = patient_id(response)
    everything = client.get(f"/Patient/{pid}/$everything?_count=1000").get_json()
    assert everything["total"] == len(bundle["entry"])
    held = {(r["resource"]["resourceType"], json.dumps(r["resource"].get("identifier"))): r["resource"] for r in everything["entry"]}
    locations = {e["fullUrl"]: r["response"]["location"].split("/_history")[0] for e, r in zip(bundle["entry"], body["entry"])}
    for entry in bundle["entry"]:
        sent = entry["resource"]
        got = held[(sent["resourceType"], json.dumps(sent.get("identifier")))]
        expected = json.loads(json.dumps(sent).replace('"urn:uuid:', '"URN:'))
        for urn, location in locations.items():
            expected = json.loads(json.dumps(expected).replace(f'"URN:{urn[9:]}"', json.dumps(location)))
        assert _strip(got) == _strip(expected), sent["resourceType"]


def test_posting_the_same_bundle_twice_changes_nothing(client):
    bundle = case_to_bundle(load_case("case2-insulinoma"))
    first = post(client, bundle).get_json()
    after_first = stored(client)
    second = post(client, copy.deepcopy(bundle)).get_json()
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK"] * len(bundle["entry"])
    assert [e["response"]["etag"] for e in second["entry"]] == [e["response"]["etag"] for e in first["entry"]]
    assert stored(client) == after_first  # no new version, no compartment version bump


def test_case_post_with_store_applies_the_mapped_bundle(client):
    response = client.post("/cases?store=true", data=json.dumps(load_case("case1-vipoma")), content_type="application/json")
    assert response.status_code == 200 and response.get_json()["type"] == "transaction-response"
    pid = patient_id(response)
    assert client.get(f"/Patient/{pid}").get_json()["gender"] == "female"


def test_conditional_create_and_update_by_identifier(client):
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:ehr", "value": "p1"}], "gender": "male"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111", "resource": patient,
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:ehr|p1"}}]}
    first = post(client, bundle).get_json()["entry"][0]["response"]
    second = post(client, bundle).get_json()["entry"][0]["response"]
    assert first["status"] == "201 Created" and second["status"] == "200 OK" and first["location"] == second["location"]
    update = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**patient, "gender": "female"}, "request": {"method": "PUT", "url": "Patient?identifier=urn:ehr|p1"}}]}
    response = post(client, update).get_json()["entry"][0]["response"]
    assert response["location"].startswith(first["location"].split("/_history")[0]) and response["etag"] == 'W/"2"'


def test_any_resource_type_is_kept(client):
    pid = "p-ehr-1"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "female"}, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"}, "subject": {"reference": f"Patient/{pid}"}},
         "request": {"method": "POST", "url": "Encounter"}},
        {"resource": {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": f"Patient/{pid}"},
                      "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7617"}]}},
         "request": {"method": "POST", "url": "MedicationRequest"}},
    ]}
    assert post(client, bundle).status_code == 200
    types = {e["resource"]["resourceType"] for e in client.get(f"/Patient/{pid}/$everything").get_json()["entry"]}
    assert types == {"Patient", "Encounter", "MedicationRequest"}


def _bad(client, bundle, status, expected_paths, path="/Bundle", raw=None):
    before = stored(client)
    response = client.post(path, data=raw if raw is not None else json.dumps(bundle), content_type="application/fhir+json")
    assert response.status_code == status
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    paths = {i["expression"][0] for i in outcome["issue"]}
    assert set(expected_paths) <= paths, paths
    assert stored(client) == before  # nothing partially written


def _two_entry_bundle() -> dict:
    return copy.deepcopy(case_to_bundle(load_case("case1-vipoma")))


def test_broken_reference_rejects_the_whole_transaction(client):
    bundle = _two_entry_bundle()
    i = fact_index(bundle, "diarrhoea-at-presentation")
    bundle["entry"][i]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    _bad(client, bundle, 400, [f"Bundle.entry[{i}].resource.subject.reference"])


def test_strict_policy_rejects_a_reference_to_a_resource_we_do_not_hold(strict):
    bundle = _two_entry_bundle()
    i = fact_index(bundle, "syndrome-recurrence-1")
    bundle["entry"][i]["resource"]["subject"]["reference"] = "Patient/nobody"
    _bad(strict, bundle, 404, [f"Bundle.entry[{i}].resource.subject.reference"])


def test_lenient_policy_keeps_a_reference_to_a_resource_we_do_not_hold_with_a_warning(client):
    assert client.application.config["REFERENCE_POLICY"] == "lenient"  # the integration gateway's default
    bundle = _two_entry_bundle()
    i = fact_index(bundle, "syndrome-recurrence-1")
    bundle["entry"][i]["resource"]["subject"]["reference"] = "Patient/nobody"
    body = post(client, bundle).get_json()
    response = body["entry"][i]["response"]
    assert response["status"] == "201 Created"
    (issue,) = response["outcome"]["issue"]
    assert issue["severity"] == "warning" and issue["expression"] == [f"Bundle.entry[{i}].resource.subject.reference"]
    stored_resource = client.get(response["location"].split("/_history")[0]).get_json()
    assert stored_resource["subject"]["reference"] == "Patient/nobody"


def test_urn_references_must_resolve_under_the_lenient_policy_too(client):
    bundle = _two_entry_bundle()
    i = fact_index(bundle, "diarrhoea-at-presentation")
    bundle["entry"][i]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    _bad(client, bundle, 400, [f"Bundle.entry[{i}].resource.subject.reference"])


def test_wrong_resource_type_names_the_entry(client):
    bundle = _two_entry_bundle()
    metastases, weight_loss = fact_index(bundle, "liver-metastases"), fact_index(bundle, "weight-loss-at-presentation")
    bundle["entry"][metastases]["resource"]["resourceType"] = "Conditio"
    bundle["entry"][weight_loss]["resource"]["status"] = 7
    _bad(client, bundle, 400, [f"Bundle.entry[{metastases}].resource.resourceType",
                               f"Bundle.entry[{weight_loss}].resource.status"])
    _bad(client, {"resourceType": "Patient"}, 400, ["Bundle.resourceType"])


def test_duplicate_full_urls_are_rejected(client):
    bundle = _two_entry_bundle()
    primary, metastases = fact_index(bundle, "primary-tumour"), fact_index(bundle, "liver-metastases")
    assert primary < metastases  # the later of two entries with one fullUrl is the duplicate
    bundle["entry"][metastases]["fullUrl"] = bundle["entry"][primary]["fullUrl"]
    _bad(client, bundle, 400, [f"Bundle.entry[{metastases}].fullUrl"])


def test_oversized_bundles_are_rejected(store_app):
    app, client = store_app, authorised_client(store_app)
    app.config["MAX_BUNDLE_ENTRIES"] = 10
    _bad(client, _two_entry_bundle(), 413, ["Bundle.entry"])
    app.config["MAX_CONTENT_LENGTH"] = 1000
    _bad(client, _two_entry_bundle(), 413, ["$"])


def test_stale_if_match_fails_the_transaction_with_412(client):
    bundle = _two_entry_bundle()
    post(client, bundle)
    changed = copy.deepcopy(bundle)
    i = fact_index(changed, "primary-tumour")
    changed["entry"][i]["resource"]["note"] = [{"text": "edited"}]
    changed["entry"][i]["request"]["ifMatch"] = 'W/"7"'
    _bad(client, changed, 412, [f"Bundle.entry[{i}].request.ifMatch"])


def test_batch_applies_valid_entries_and_reports_each_failure(strict):
    client = strict
    pid = "p-batch"
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {}}, "request": {"method": "PATCH", "url": "Observation/x"}},
        {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/missing"}}, "request": {"method": "POST", "url": "Condition"}},
        {"resource": {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "code": {"text": "x"}}, "request": {"method": "POST", "url": "Condition"}},
    ]}
    body = post(client, bundle).get_json()
    assert body["type"] == "batch-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "400 Bad Request", "404 Not Found", "201 Created"]
    assert body["entry"][1]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].request.method"]


def test_collection_bundle_is_created_once_never_overwriting_by_id(client):
    """Issue 15: a collection used to overwrite by id with no version check; its entries are creates (once per identifier)."""
    kept = post(client, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "held-1", "gender": "female"}, "request": {"method": "PUT", "url": "Patient/held-1"}}]})
    assert kept.status_code == 200
    collection = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "held-1", "gender": "male", "identifier": [{"system": "urn:c", "value": "9"}]}}]}
    first = post(client, collection, path="/").get_json()["entry"][0]["response"]
    again = post(client, collection, path="/").get_json()["entry"][0]["response"]
    assert client.get("/Patient/held-1").get_json()["gender"] == "female"
    assert first["status"] == "201 Created" and again["status"] == "200 OK" and first["location"] == again["location"]


def test_collection_bundle_is_kept_all_or_nothing(client):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:c", "value": "1"}]}},
        {"resource": {"resourceType": "Condition", "code": {"text": "VIPoma"}, "subject": {"reference": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"}}},
    ]}
    body = post(client, bundle, path="/").get_json()
    assert body["type"] == "transaction-response" and len(body["entry"]) == 2
    pid = stored_patient_id(body)
    assert client.get(f"/Patient/{pid}/$everything").get_json()["total"] == 2


@pytest.mark.parametrize("btype", ["transaction", "batch", "collection"])
def test_empty_bundle_gets_an_empty_response_bundle(client, btype):
    """Found by the schemathesis contract test: an empty Bundle used to raise a 500."""
    body = post(client, {"resourceType": "Bundle", "type": btype, "entry": []}).get_json()
    assert body["type"] in ("transaction-response", "batch-response") and body["entry"] == []


def test_null_elements_are_rejected_not_read_as_absent(client):
    """Found by the hypothesis bundle test: `"identifier": null` passed fhir.resources and crashed the write."""
    bundle = _two_entry_bundle()
    i = fact_index(bundle, "two-stage-hepatectomy")
    bundle["entry"][i]["resource"]["identifier"] = None
    _bad(client, bundle, 400, [f"Bundle.entry[{i}].resource.identifier"])
