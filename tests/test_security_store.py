"""Issue 15, the store-side items: an attack on the gateway's writes and its audit trail, on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest

from store.audit_log import events


@pytest.fixture
def client(store_client):
    return store_client


def _put(client, resource: dict, **headers):
    return client.put(f"/{resource['resourceType']}/{resource['id']}", data=json.dumps(resource),
                      content_type="application/fhir+json", headers=headers)


def _post_bundle(client, entries: list[dict]):
    return client.post("/Bundle", data=json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
                       content_type="application/fhir+json")


def _two_patients_and_an_observation(client) -> None:
    for pid in ("pat-a", "pat-b"):
        assert _put(client, {"resourceType": "Patient", "id": pid}).status_code == 201
    obs = {"resourceType": "Observation", "id": "obs-a", "status": "final", "code": {"text": "potassium"},
           "identifier": [{"system": "urn:lab", "value": "k-1"}], "subject": {"reference": "Patient/pat-a"}}
    assert _put(client, obs).status_code == 201


def test_a_conditional_update_cannot_move_a_record_to_another_patient(client):
    _two_patients_and_an_observation(client)
    moved = {"resourceType": "Observation", "status": "final", "code": {"text": "potassium"},
             "identifier": [{"system": "urn:lab", "value": "k-1"}], "subject": {"reference": "Patient/pat-b"}}
    response = client.put("/Observation?identifier=urn:lab|k-1", data=json.dumps(moved), content_type="application/fhir+json")
    assert response.status_code == 409 and response.get_json()["issue"][0]["code"] == "conflict"
    assert client.get("/Observation/obs-a").get_json()["subject"]["reference"] == "Patient/pat-a"
    assert client.get("/Observation?patient=pat-b").get_json().get("entry", []) == []


def test_delete_honours_if_match(client):
    _two_patients_and_an_observation(client)
    assert client.delete("/Observation/obs-a", headers={"If-Match": 'W/"7"'}).status_code == 412
    assert client.get("/Observation/obs-a").status_code == 200
    stale = _post_bundle(client, [{"request": {"method": "DELETE", "url": "Observation/obs-a", "ifMatch": 'W/"7"'}}])
    assert stale.status_code == 412 and client.get("/Observation/obs-a").status_code == 200
    assert client.delete("/Observation/obs-a", headers={"If-Match": 'W/"1"'}).status_code == 204
    assert client.get("/Observation/obs-a").status_code == 410


@pytest.mark.parametrize("how", ["rest", "bundle", "delete"])
def test_audit_events_are_never_client_writable(client, how):
    forged = {"resourceType": "AuditEvent", "id": "forged-1", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
              "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}}
    if how == "rest":
        response = _put(client, forged)
    elif how == "bundle":
        response = _post_bundle(client, [{"resource": forged, "request": {"method": "PUT", "url": "AuditEvent/forged-1"}}])
    else:
        response = _post_bundle(client, [{"request": {"method": "DELETE", "url": "AuditEvent/forged-1"}}])
    assert response.status_code == 403
    assert client.get("/AuditEvent/forged-1").status_code == 404


def test_a_read_is_audited_with_the_patient_of_the_resource_returned_not_the_query(client):
    _two_patients_and_an_observation(client)
    engine = client.application.extensions["store"]
    assert client.get("/Observation/obs-a?patient=pat-b").status_code in (200, 400)
    latest, _ = events(engine, None, 1, 0)
    named = {e["what"].get("reference") for e in latest[0]["entity"]}
    assert "Patient/pat-a" in named and "Patient/pat-b" not in named


def test_a_type_level_search_records_the_patients_it_returned(client):
    _two_patients_and_an_observation(client)
    engine = client.application.extensions["store"]
    assert client.get("/Observation?code:text=potassium").status_code == 200
    latest, _ = events(engine, None, 1, 0)
    assert "Patient/pat-a" in {e["what"].get("reference") for e in latest[0]["entity"]}
    assert events(engine, "pat-a", 100, 0)[1] >= 1
