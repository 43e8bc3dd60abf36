"""FHIR R4 REST conformance of the gateway on the store of record (http.html, search.html), on SQLite and PostgreSQL.

Each test drives the real Flask app (`store_client`, every scope) on each engine and checks status, headers and
bodies the way R4 http.html words them. Resources are shaped like Synthea's (Patients with MRN/SSN identifiers,
Practitioners with NPIs, ambulatory check-up Encounters) or come from the seed golden bundles.
"""
from __future__ import annotations

import csv
import datetime as dt
import email.utils
import json
import re
import time
from bundles import stored_patient_id
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from case_files import DATA, SEED_CASES
from gateway_setup import authorised_client
from sqlalchemy import func, select

from store import db
from store.schema import resource_versions, resources

FHIR_JSON = "application/fhir+json"
# RFC 9110 section 5.6.7: the one HTTP-date format a server generates (IMF-fixdate).
IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"\d{4} \d{2}:\d{2}:\d{2} GMT$")
SYNTHEA = "https://github.com/synthetichealth/synthea"
MRN_SYSTEM = "http://hospital.smarthealthit.org"   # the MRN system Synthea writes
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
TYPES_FILE = Path(__file__).resolve().parent.parent / "mappings" / "r4_resource_types.csv"


# -- realistic resources ---------------------------------------------------------------------------------------
def npi(nine_digits: str) -> str:
    """A well-formed NPI: nine digits and the Luhn check digit computed over the 80840 prefix (CMS NPI standard)."""
    digits = [int(d) for d in "80840" + nine_digits]
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += sum(divmod(d * 2, 10)) if i % 2 == 0 else d
    return nine_digits + str((10 - total % 10) % 10)


def patient(mrn: str, family: str = "Kshlerin", given: str = "Ahmad", birth: str = "1961-04-17",
            gender: str = "male") -> dict:
    return {"resourceType": "Patient",
            "identifier": [
                {"system": SYNTHEA, "value": f"b7f2c2a4-{mrn}"},
                {"type": {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical Record Number"}],
                          "text": "Medical Record Number"}, "system": MRN_SYSTEM, "value": mrn},
                {"type": {"coding": [{"system": V2_0203, "code": "SS", "display": "Social Security Number"}],
                          "text": "Social Security Number"}, "system": SSN_SYSTEM, "value": "999-41-2289"}],
            "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Mr."]}],
            "gender": gender, "birthDate": birth,
            "address": [{"line": ["688 Johns Lock"], "city": "Springfield", "state": "MA", "country": "US"}]}


def mrn_token(mrn: str) -> str:
    return f"{MRN_SYSTEM}|{mrn}"


def practitioner(nine: str, family: str = "Gutkowski", given: str = "Jeffrey") -> dict:
    return {"resourceType": "Practitioner", "active": True,
            "identifier": [{"system": NPI_SYSTEM, "value": npi(nine)}],
            "name": [{"family": family, "given": [given], "prefix": ["Dr."]}], "gender": "male"}


def encounter(subject: str, performer: str, start: str = "2019-06-03T09:15:00Z") -> dict:
    """A Synthea ambulatory check-up: class AMB (v3-ActCode), type SNOMED CT 185349003."""
    return {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003",
                                  "display": "Encounter for check up (procedure)"}], "text": "Encounter for check up (procedure)"}],
            "subject": {"reference": subject},
            "participant": [{"individual": {"reference": performer}}],
            "period": {"start": start, "end": start.replace("09:15", "09:45")}}


def seed_bundle(case: str) -> dict:
    return json.loads((DATA / case / "expected-bundle.json").read_text(encoding="utf-8"))


# -- helpers ---------------------------------------------------------------------------------------------------
def create(client, resource: dict, **headers: str):
    response = client.post(f"/{resource['resourceType']}", json=resource, content_type=FHIR_JSON, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response


def put(client, resource: dict, **headers: str):
    return client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource, content_type=FHIR_JSON, headers=headers)


def transaction(client, entries: list[dict], btype: str = "transaction", **headers: str):
    return client.post("/", json={"resourceType": "Bundle", "type": btype, "entry": entries}, content_type=FHIR_JSON,
                       headers=headers)


def assert_http_date(value: str | None) -> None:
    assert value and IMF_FIXDATE.match(value), f"not an HTTP-date (IMF-fixdate): {value!r}"
    email.utils.parsedate_to_datetime(value)


def assert_version_headers(response, version: int) -> None:
    assert response.headers["ETag"] == f'W/"{version}"'
    assert_http_date(response.headers.get("Last-Modified"))


def assert_fhir_body(response) -> dict:
    assert response.mimetype == FHIR_JSON
    return response.get_json(force=True)


def assert_outcome(response, status: int | tuple[int, ...], expression: str | None = None) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.get_data(as_text=True)
    body = assert_fhir_body(response)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["expression"] for i in body["issue"])
    if expression is not None:
        found = [e for i in body["issue"] for e in i["expression"]]
        assert any(expression in e for e in found), found
    return body


def local(url: str) -> str:
    """A link of ours (absolute) as the path and query the test client asks for."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def follow(client, first: str) -> list[dict]:
    """Every page of a Bundle, following next links; the pages' bodies."""
    pages, url = [], first
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json(force=True)
        pages.append(body)
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        url = local(nxt[0]) if nxt else None
        assert len(pages) < 50
    return pages


def count_rows(engine, rtype: str | None = None) -> int:
    query = select(func.count()).select_from(resources)
    if rtype:
        query = query.where(resources.c.res_type == rtype)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def history_versions(client, path: str) -> list[str]:
    return [e["response"]["etag"] for page in follow(client, path) for e in page["entry"]]


# -- create, read, vread -------------------------------------------------------------------------------------
def test_create_answers_201_with_a_server_assigned_id_location_etag_and_last_modified(store_client):
    sent = {**patient("MRN-1001"), "id": "chosen-by-client"}
    response = create(store_client, sent)
    body = assert_fhir_body(response)
    assert body["id"] != "chosen-by-client" and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", body["id"])
    assert response.headers["Location"] == f"http://localhost/Patient/{body['id']}/_history/1"
    assert_version_headers(response, 1)
    assert body["meta"]["versionId"] == "1" and body["meta"]["lastUpdated"].endswith("Z")
    assert body["identifier"] == sent["identifier"] and body["name"] == sent["name"]


def test_read_answers_the_current_version_with_its_etag_and_last_modified(store_client):
    created = create(store_client, patient("MRN-1002")).get_json()
    response = store_client.get(f"/Patient/{created['id']}")
    assert response.status_code == 200
    assert assert_fhir_body(response) == created
    assert_version_headers(response, 1)
    last_updated = dt.datetime.fromisoformat(created["meta"]["lastUpdated"])
    assert email.utils.parsedate_to_datetime(response.headers["Last-Modified"]) == last_updated.replace(microsecond=0)


def test_vread_answers_each_version_with_its_own_etag(store_client):
    created = create(store_client, patient("MRN-1003")).get_json()
    changed = {**created, "gender": "female"}
    assert put(store_client, changed).status_code == 200
    for version, gender in ((1, "male"), (2, "female")):
        response = store_client.get(f"/Patient/{created['id']}/_history/{version}")
        assert response.status_code == 200
        body = assert_fhir_body(response)
        assert (body["meta"]["versionId"], body["gender"]) == (str(version), gender)
        assert_version_headers(response, version)
    assert_outcome(store_client.get(f"/Patient/{created['id']}/_history/3"), 404)


def test_read_of_an_unknown_id_is_404_and_of_an_unknown_type_is_404(store_client):
    assert_outcome(store_client.get("/Patient/never-written"), 404)
    assert_outcome(store_client.get("/Coding/abc"), 404)        # a data type is not a resource type
    assert_outcome(store_client.get("/NoSuchType/abc"), 404)


def test_delete_then_read_is_410_and_then_update_makes_versions_1_2_3_in_every_history_body(store_client):
    pid = create(store_client, patient("MRN-1004")).get_json()["id"]
    deleted = store_client.delete(f"/Patient/{pid}")
    assert deleted.status_code == 204 and not deleted.data and "Content-Type" not in deleted.headers
    assert_outcome(store_client.get(f"/Patient/{pid}"), 410)
    again = put(store_client, {**patient("MRN-1004", family="Kshlerin-Mraz"), "id": pid})
    assert again.status_code == 201  # update-as-create of a deleted resource makes it exist again
    assert again.headers["Location"].endswith(f"/Patient/{pid}/_history/3")
    assert_version_headers(again, 3)
    assert store_client.get(f"/Patient/{pid}").get_json()["meta"]["versionId"] == "3"
    v1, v2, v3 = (store_client.get(f"/Patient/{pid}/_history/{n}") for n in (1, 2, 3))
    assert v1.get_json()["meta"]["versionId"] == "1" and v1.get_json()["name"][0]["family"] == "Kshlerin"
    assert_outcome(v2, 410)  # the delete is version 2: vread of it is 410 (http.html#vread)
    assert v3.get_json()["meta"]["versionId"] == "3" and v3.get_json()["name"][0]["family"] == "Kshlerin-Mraz"
    history = store_client.get(f"/Patient/{pid}/_history").get_json()
    assert history["type"] == "history"
    entries = history["entry"]
    assert [e["request"]["method"] for e in entries] == ["PUT", "DELETE", "POST"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in entries[1]
    assert [e["resource"]["meta"]["versionId"] for e in (entries[0], entries[2])] == ["3", "1"]


# -- update ----------------------------------------------------------------------------------------------------
def test_update_makes_a_new_version_and_identical_content_makes_none(store_client):
    created = create(store_client, patient("MRN-1005")).get_json()
    response = put(store_client, {**created, "birthDate": "1961-04-18"})
    assert response.status_code == 200
    assert response.headers["Location"].endswith(f"/Patient/{created['id']}/_history/2")
    assert_version_headers(response, 2)
    same = put(store_client, {**created, "birthDate": "1961-04-18"})
    assert same.status_code == 200 and same.headers["ETag"] == 'W/"2"'


def test_update_as_create_with_a_client_id_answers_201_version_1(store_client):
    response = put(store_client, {**practitioner("999999701"), "id": "npi-practitioner-1"})
    assert response.status_code == 201
    assert response.headers["Location"] == "http://localhost/Practitioner/npi-practitioner-1/_history/1"
    assert_version_headers(response, 1)
    assert store_client.get("/Practitioner/npi-practitioner-1").status_code == 200


def test_update_whose_body_id_differs_from_the_url_is_400(store_client):
    response = store_client.put("/Patient/a-1", json={**patient("MRN-1006"), "id": "b-2"}, content_type=FHIR_JSON)
    assert_outcome(response, 400, "Patient.id")


def test_if_match_with_a_stale_version_is_412_and_with_the_current_one_updates(store_client):
    created = create(store_client, patient("MRN-1007")).get_json()
    assert put(store_client, {**created, "gender": "female"}).status_code == 200
    stale = put(store_client, {**created, "gender": "other"}, **{"If-Match": 'W/"1"'})
    assert_outcome(stale, 412, "If-Match")
    assert store_client.get(f"/Patient/{created['id']}").get_json()["gender"] == "female"
    current = put(store_client, {**created, "gender": "other"}, **{"If-Match": 'W/"2"'})
    assert current.status_code == 200 and current.headers["ETag"] == 'W/"3"'


def test_if_none_match_and_if_modified_since_answer_304_without_a_body(store_client):
    created = create(store_client, patient("MRN-1008")).get_json()
    url = f"/Patient/{created['id']}"
    first = store_client.get(url)
    not_modified = store_client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304 and not not_modified.data
    assert not_modified.headers["ETag"] == 'W/"1"'
    assert store_client.get(url, headers={"If-None-Match": 'W/"9"'}).status_code == 200
    since = store_client.get(url, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 304 and not since.data
    assert store_client.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


# -- conditional interactions ------------------------------------------------------------------------------------
def test_conditional_create_makes_one_resource_returns_the_match_and_refuses_two_matches(store_client, db_engine):
    criteria = {"If-None-Exist": f"identifier={mrn_token('MRN-2001')}"}
    first = create(store_client, patient("MRN-2001"), **criteria)
    pid = first.get_json()["id"]
    second = store_client.post("/Patient", json=patient("MRN-2001", given="Changed"), content_type=FHIR_JSON, headers=criteria)
    assert second.status_code == 200  # one match: nothing is created (http.html#ccreate)
    assert second.get_json()["id"] == pid and second.headers["ETag"] == 'W/"1"'
    assert second.headers["Location"].endswith(f"/Patient/{pid}/_history/1")
    assert history_versions(store_client, f"/Patient/{pid}/_history") == ['W/"1"']
    create(store_client, patient("MRN-2002", family="Twin"))
    create(store_client, patient("MRN-2003", family="Twin"))
    before = count_rows(db_engine, "Patient")
    two = store_client.post("/Patient", json=patient("MRN-2004", family="Twin"), content_type=FHIR_JSON,
                            headers={"If-None-Exist": "family=Twin"})
    assert_outcome(two, 412, "If-None-Exist")
    assert count_rows(db_engine, "Patient") == before


def test_conditional_update_creates_on_no_match_updates_one_and_refuses_many(store_client):
    url = f"/Patient?{urlencode({'identifier': mrn_token('MRN-2101')})}"
    made = store_client.put(url, json=patient("MRN-2101"), content_type=FHIR_JSON)
    assert made.status_code == 201 and made.headers["ETag"] == 'W/"1"'
    pid = made.get_json()["id"]
    updated = store_client.put(url, json=patient("MRN-2101", given="Ahmed"), content_type=FHIR_JSON)
    assert updated.status_code == 200 and updated.get_json()["id"] == pid and updated.headers["ETag"] == 'W/"2"'
    for mrn in ("MRN-2102", "MRN-2103"):
        create(store_client, patient(mrn, family="Schaden"))
    many = store_client.put("/Patient?family=Schaden", json=patient("MRN-2104", family="Schaden"), content_type=FHIR_JSON)
    assert_outcome(many, 412, "url")


def test_conditional_update_without_a_match_never_overwrites_the_resource_its_body_names(store_client):
    victim = put(store_client, {**patient("MRN-2111"), "id": "mrn-2111"})
    assert victim.status_code == 201
    url = f"/Patient?{urlencode({'identifier': mrn_token('MRN-2112')})}"
    clash = store_client.put(url, json={**patient("MRN-2112"), "id": "mrn-2111"}, content_type=FHIR_JSON)
    assert_outcome(clash, 409, "Patient.id")
    kept = store_client.get("/Patient/mrn-2111")
    assert kept.headers["ETag"] == 'W/"1"' and kept.get_json()["identifier"][1]["value"] == "MRN-2111"


def test_delete_with_a_stale_if_match_is_412_and_keeps_the_resource(store_client):
    pid = create(store_client, patient("MRN-2121")).get_json()["id"]
    assert_outcome(store_client.delete(f"/Patient/{pid}", headers={"If-Match": 'W/"4"'}), 412, "If-Match")
    assert store_client.get(f"/Patient/{pid}").status_code == 200
    assert store_client.delete(f"/Patient/{pid}", headers={"If-Match": 'W/"1"'}).status_code == 204


def test_conditional_delete_removes_the_one_match_and_refuses_many(store_client):
    pid = create(store_client, patient("MRN-2201")).get_json()["id"]
    gone = store_client.delete(f"/Patient?{urlencode({'identifier': mrn_token('MRN-2201')})}")
    assert gone.status_code == 204 and gone.headers["ETag"] == 'W/"2"'
    assert_outcome(store_client.get(f"/Patient/{pid}"), 410)
    assert store_client.delete(f"/Patient?{urlencode({'identifier': mrn_token('MRN-2201')})}").status_code == 204
    kept = [create(store_client, patient(m, family="Rempel")).get_json()["id"] for m in ("MRN-2202", "MRN-2203")]
    assert_outcome(store_client.delete("/Patient?family=Rempel"), 412, "url")
    assert all(store_client.get(f"/Patient/{k}").status_code == 200 for k in kept)
    assert_outcome(store_client.delete("/Patient"), 400)  # no criteria would match everything


# -- Prefer, formats, methods ------------------------------------------------------------------------------------
def test_prefer_return_minimal_representation_and_operation_outcome(store_client):
    minimal = create(store_client, patient("MRN-3001"), Prefer="return=minimal")
    assert not minimal.data and "Content-Type" not in minimal.headers
    assert minimal.headers["Location"].endswith("/_history/1")
    assert_version_headers(minimal, 1)
    full = create(store_client, patient("MRN-3002"), Prefer="return=representation")
    assert assert_fhir_body(full)["resourceType"] == "Patient"
    outcome = create(store_client, patient("MRN-3003"), Prefer="return=OperationOutcome")
    body = assert_fhir_body(outcome)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "information"
    assert outcome.headers["Location"].endswith("/_history/1")
    pid = minimal.headers["Location"].split("/")[-3]
    updated = put(store_client, {**store_client.get(f"/Patient/{pid}").get_json(), "gender": "female"}, Prefer="return=minimal")
    assert updated.status_code == 200 and not updated.data and updated.headers["ETag"] == 'W/"2"'


def test_patch_is_405_naming_the_allowed_methods(store_client):
    pid = create(store_client, patient("MRN-3101")).get_json()["id"]
    response = store_client.patch(f"/Patient/{pid}", data="[]", content_type="application/json-patch+json")
    assert_outcome(response, 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "PUT", "DELETE"} <= allowed and "PATCH" not in allowed


def test_xml_is_406_by_format_or_accept_and_an_xml_body_is_415(store_client):
    pid = create(store_client, patient("MRN-3201")).get_json()["id"]
    assert_outcome(store_client.get(f"/Patient/{pid}?_format=xml"), 406, "_format")
    assert_outcome(store_client.get(f"/Patient/{pid}", headers={"Accept": "application/fhir+xml"}), 406, "Accept")
    assert_outcome(store_client.get("/Patient?family=Kshlerin&_format=application/fhir+xml"), 406)
    assert store_client.get(f"/Patient/{pid}?_format=json").status_code == 200
    assert store_client.get(f"/Patient/{pid}", headers={"Accept": "application/fhir+json"}).status_code == 200
    xml = store_client.post("/Patient", data='<Patient xmlns="http://hl7.org/fhir"/>', content_type="application/fhir+xml")
    assert_outcome(xml, 415)


# -- history -----------------------------------------------------------------------------------------------------
def test_instance_history_pages_newest_first_with_count_and_next_links(store_client):
    created = create(store_client, patient("MRN-4001")).get_json()
    for given in ("B", "C", "D", "E"):
        assert put(store_client, {**created, "name": [{"family": "Kshlerin", "given": [given]}]}).status_code == 200
    pages = follow(store_client, f"/Patient/{created['id']}/_history?_count=2")
    assert [len(p["entry"]) for p in pages] == [2, 2, 1]
    versions = [e["resource"]["meta"]["versionId"] for p in pages for e in p["entry"]]
    assert versions == ["5", "4", "3", "2", "1"]
    assert all(p["type"] == "history" for p in pages)


def test_type_and_system_history_honour_since_and_count(store_client):
    create(store_client, patient("MRN-4101"))
    time.sleep(0.01)
    later = create(store_client, patient("MRN-4102")).get_json()
    time.sleep(0.01)
    practitioner_id = create(store_client, practitioner("999999702")).get_json()["id"]
    since = urlencode({"_since": later["meta"]["lastUpdated"]})
    typed = [e["resource"]["id"] for p in follow(store_client, f"/Patient/_history?{since}&_count=1") for e in p["entry"]]
    assert typed == [later["id"]]
    system = [e["fullUrl"].split("/", 3)[3] for p in follow(store_client, f"/_history?{since}&_count=1") for e in p["entry"]]
    assert system == [f"Practitioner/{practitioner_id}", f"Patient/{later['id']}"]
    assert_outcome(store_client.get("/_history?_since=yesterday"), 400, "_since")
    assert_outcome(store_client.get("/Patient/_history?_count=0"), 400, "_count")


# -- search ------------------------------------------------------------------------------------------------------
def test_post_search_answers_as_the_get_search(store_client):
    for mrn, given in (("MRN-5001", "Ahmad"), ("MRN-5002", "Ahmad"), ("MRN-5003", "Zula")):
        create(store_client, patient(mrn, given=given))
    by_get = store_client.get("/Patient?given=ahmad&_sort=_lastUpdated").get_json()
    by_post = store_client.post("/Patient/_search", data="given=ahmad&_sort=_lastUpdated",
                                content_type="application/x-www-form-urlencoded").get_json()
    assert [e["resource"]["id"] for e in by_post["entry"]] == [e["resource"]["id"] for e in by_get["entry"]]
    assert by_get["total"] == by_post["total"] == 2
    assert_outcome(store_client.post("/Patient/_search", json={"given": "ahmad"}), 415)


def test_search_pages_by_cursor_without_skipping_or_repeating_rows_under_concurrent_writes(store_client):
    first_ids = [create(store_client, patient(f"MRN-51{i:02d}", family="Paging")).get_json()["id"] for i in range(7)]
    seen: list[str] = []
    url: str | None = "/Patient?family=paging&_count=3"
    while url:
        body = store_client.get(url).get_json()
        page = [e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "match"]
        seen += page
        if len(seen) == 3:  # writes between pages: a new match, and an update of a row already seen
            create(store_client, patient("MRN-5199", family="Paging"))
            row = store_client.get(f"/Patient/{seen[0]}").get_json()
            assert put(store_client, {**row, "gender": "female"}).status_code == 200
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        url = local(nxt[0]) if nxt else None
    assert len(seen) == len(set(seen)) == 8 and set(first_ids) <= set(seen)


def test_summary_count_elements_and_total(store_client):
    for mrn in ("MRN-5201", "MRN-5202"):
        create(store_client, patient(mrn, family="Summary"))
    count = store_client.get("/Patient?family=summary&_summary=count").get_json()
    assert count["total"] == 2 and "entry" not in count
    subset = store_client.get("/Patient?family=summary&_elements=name").get_json()
    for entry in subset["entry"]:
        assert set(entry["resource"]) == {"resourceType", "id", "meta", "name"}
        assert {"code": "SUBSETTED"}.items() <= entry["resource"]["meta"]["tag"][-1].items()
    total = store_client.get("/Patient?family=summary&_count=1&_total=accurate").get_json()
    assert total["total"] == 2 and len(total["entry"]) == 1


def test_unknown_parameter_is_400_or_ignored_and_reported_when_lenient(store_client):
    create(store_client, patient("MRN-5301"))
    assert_outcome(store_client.get("/Patient?shoe-size=44"), 400, "Patient?shoe-size")
    assert_outcome(store_client.get("/Patient?family:sounds-like=smith"), 400, "Patient?family")
    conditional = store_client.post("/Patient", json=patient("MRN-5302"), content_type=FHIR_JSON,
                                    headers={"If-None-Exist": "shoe-size=44"})
    assert_outcome(conditional, 400, "If-None-Exist")
    lenient = store_client.get("/Patient?shoe-size=44", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    body = lenient.get_json()
    outcomes = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and outcomes[0]["issue"][0]["severity"] == "warning"
    assert len([e for e in body["entry"] if e["search"]["mode"] == "match"]) == 1
    assert "shoe-size" in body["link"][0]["url"]


# -- transactions and batches ------------------------------------------------------------------------------------
def test_transaction_with_a_failing_entry_leaves_nothing_written(store_client, db_engine):
    existing = create(store_client, patient("MRN-6001")).get_json()
    before = (count_rows(db_engine), _version_count(db_engine))
    response = transaction(store_client, [
        {"fullUrl": "urn:uuid:5c9a3f2e-0d7e-4f0e-9a51-1f1e2b3c4d01", "resource": practitioner("999999703"),
         "request": {"method": "POST", "url": "Practitioner"}},
        {"resource": encounter(f"Patient/{existing['id']}", "urn:uuid:5c9a3f2e-0d7e-4f0e-9a51-1f1e2b3c4d01"),
         "request": {"method": "POST", "url": "Encounter"}},
        {"resource": {**existing, "gender": "female"},
         "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"7"'}}])
    assert_outcome(response, 412, "Bundle.entry[2]")
    assert (count_rows(db_engine), _version_count(db_engine)) == before
    assert store_client.get(f"/Patient/{existing['id']}").get_json()["gender"] == "male"


def _version_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(resource_versions)).scalar_one()


def test_transaction_processes_delete_post_put_then_get_and_gets_see_its_own_writes(store_client):
    old = create(store_client, patient("MRN-6101")).get_json()["id"]
    new_token = mrn_token("MRN-6102")
    response = transaction(store_client, [
        {"request": {"method": "GET", "url": f"Patient?{urlencode({'identifier': new_token})}"}},
        {"request": {"method": "GET", "url": f"Patient/{old}"}},
        {"request": {"method": "GET", "url": "Practitioner/npi-6103"}},
        {"resource": {**practitioner("999999704"), "id": "npi-6103"}, "request": {"method": "PUT", "url": "Practitioner/npi-6103"}},
        {"resource": patient("MRN-6102"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"Patient/{old}"}}])
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"].split()[0] for e in body["entry"]]
    assert statuses == ["200", "410", "200", "201", "201", "204"]
    search = body["entry"][0]["resource"]
    assert search["type"] == "searchset" and search["total"] == 1
    assert search["entry"][0]["resource"]["identifier"][1]["value"] == "MRN-6102"
    assert body["entry"][2]["resource"]["id"] == "npi-6103"
    # The write sequence of the versions is the processing order: DELETE, then POST, then PUT.
    system = store_client.get("/_history?_count=3").get_json()["entry"]
    assert [e["request"]["method"] for e in system] == ["PUT", "POST", "DELETE"]


def test_transaction_with_two_entries_on_one_resource_is_400_and_writes_nothing(store_client, db_engine):
    pid = create(store_client, patient("MRN-6201")).get_json()["id"]
    before = _version_count(db_engine)
    response = transaction(store_client, [
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
        {"resource": {**patient("MRN-6201"), "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}}])
    assert_outcome(response, 400, "Bundle.entry[1]")
    assert _version_count(db_engine) == before and store_client.get(f"/Patient/{pid}").status_code == 200


def test_transaction_with_two_puts_of_one_id_is_400_not_two_creates(store_client, db_engine):
    response = transaction(store_client, [
        {"resource": {**patient("MRN-6301"), "id": "twice"}, "request": {"method": "PUT", "url": "Patient/twice"}},
        {"resource": {**patient("MRN-6301", gender="female"), "id": "twice"}, "request": {"method": "PUT", "url": "Patient/twice"}}])
    assert_outcome(response, 400, "Bundle.entry[1]")
    assert_outcome(store_client.get("/Patient/twice"), 404)
    assert count_rows(db_engine) == 0


def test_transaction_resolves_urn_references_to_the_ids_it_assigns(store_client):
    patient_urn, doctor_urn = "urn:uuid:0b1c5e4e-7a55-4d8b-b1f9-6f3a2b9e0c11", "urn:uuid:0b1c5e4e-7a55-4d8b-b1f9-6f3a2b9e0c12"
    encounter_urn = "urn:uuid:0b1c5e4e-7a55-4d8b-b1f9-6f3a2b9e0c13"
    response = transaction(store_client, [
        {"fullUrl": encounter_urn, "resource": encounter(patient_urn, doctor_urn), "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": patient_urn, "resource": patient("MRN-6401"), "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": doctor_urn, "resource": practitioner("999999705"), "request": {"method": "POST", "url": "Practitioner"}}])
    assert response.status_code == 200, response.get_data(as_text=True)
    locations = [e["response"]["location"] for e in response.get_json()["entry"]]
    enc_ref, pat_ref, doc_ref = (loc.split("/_history")[0] for loc in locations)
    stored = store_client.get(f"/{enc_ref}").get_json()
    assert stored["subject"]["reference"] == pat_ref and stored["participant"][0]["individual"]["reference"] == doc_ref
    found = store_client.get(f"/Encounter?{urlencode({'subject.identifier': mrn_token('MRN-6401')})}").get_json()
    assert [e["resource"]["id"] for e in found["entry"]] == [enc_ref.split("/")[1]]


def test_batch_entries_succeed_or_fail_independently(store_client):
    response = transaction(store_client, [
        {"resource": patient("MRN-6501"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**patient("MRN-6502"), "birthDate": "1961-13-45"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/not-held"}},
        {"resource": practitioner("999999706"), "request": {"method": "POST", "url": "Practitioner"}}], btype="batch")
    assert response.status_code == 200
    body = response.get_json()
    assert body["type"] == "batch-response"
    assert [e["response"]["status"].split()[0] for e in body["entry"]] == ["201", "400", "404", "201"]
    failed = body["entry"][1]["response"]["outcome"]
    assert any("birthDate" in x for i in failed["issue"] for x in i["expression"])
    for entry in (body["entry"][0], body["entry"][3]):
        assert store_client.get(f"/{entry['response']['location']}").status_code == 200


@pytest.mark.parametrize("case", SEED_CASES)
def test_seed_golden_bundle_is_stored_and_replaying_it_creates_no_version(store_client, case):
    bundle = seed_bundle(case)
    first = transaction(store_client, bundle["entry"])
    assert first.status_code == 200, first.get_data(as_text=True)
    statuses = [e["response"]["status"].split()[0] for e in first.get_json()["entry"]]
    assert statuses == ["201"] * len(bundle["entry"])
    replay = transaction(store_client, bundle["entry"])
    assert [e["response"]["etag"] for e in replay.get_json()["entry"]] == ['W/"1"'] * len(bundle["entry"])
    pid = stored_patient_id(first.get_json())
    everything = store_client.get(f"/Patient/{pid}/$everything?_count=1000").get_json()
    assert everything["total"] == len(bundle["entry"])


# -- server-written types, bad input, outages ----------------------------------------------------------------------
AUDIT_EVENT = {"resourceType": "AuditEvent", "recorded": "2026-12-01T10:00:00Z",
               "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
               "agent": [{"requestor": True, "who": {"display": "forger"}}], "source": {"observer": {"display": "forger"}}}


def test_audit_events_cannot_be_written_by_clients(store_client, db_engine):
    assert_outcome(store_client.post("/AuditEvent", json=AUDIT_EVENT, content_type=FHIR_JSON), (400, 403, 405))
    assert_outcome(store_client.put("/AuditEvent/forged", json={**AUDIT_EVENT, "id": "forged"}, content_type=FHIR_JSON),
                   (400, 403, 405))
    assert_outcome(store_client.delete("/AuditEvent/anything"), (400, 403, 405))
    in_bundle = transaction(store_client, [{"resource": AUDIT_EVENT, "request": {"method": "POST", "url": "AuditEvent"}}])
    assert_outcome(in_bundle, (400, 403), "Bundle.entry[0]")
    assert count_rows(db_engine, "AuditEvent") == 0


BAD_INPUT = [
    ("post", "/Patient", b'{"resourceType": "Patient",', FHIR_JSON, 400, "$"),
    ("post", "/Patient", json.dumps({**patient("MRN-7001"), "birthDate": "1961-13-45"}), FHIR_JSON, (400, 422), "Patient.birthDate"),
    ("post", "/Patient", json.dumps({"resourceType": "Patient", "name": "Kshlerin"}), FHIR_JSON, (400, 422), "Patient.name"),
    ("post", "/Patient", json.dumps({"resourceType": "Patient", "gender": None}), FHIR_JSON, 400, "Patient.gender"),
    ("post", "/Patient", json.dumps({"resourceType": "Encounter"}), FHIR_JSON, 400, "Patient.resourceType"),
    ("post", "/Patient", json.dumps([patient("MRN-7002")]), FHIR_JSON, 400, "Patient.resourceType"),
    ("post", "/Patient", b"", FHIR_JSON, 400, "$"),
    ("put", "/Patient/bad id!", json.dumps({"resourceType": "Patient", "id": "bad id!"}), FHIR_JSON, (400, 404), None),
    ("get", "/Patient?birthdate=yesterday", None, None, 400, "Patient?birthdate"),
    ("get", "/Patient?_count=many", None, None, 400, "_count"),
    ("get", "/Patient?_sort=family", None, None, 400, "_sort"),
    ("get", "/Patient?_cursor=not-a-cursor", None, None, 400, "_cursor"),
    ("get", "/Encounter?subject.organization.name=x", None, None, 400, "Encounter?subject"),
    ("get", "/Patient/_history?_at=2020", None, None, 400, "_at"),
    ("get", "/Patient/x/_history/one", None, None, 404, None),
    ("post", "/", json.dumps({"resourceType": "Bundle", "type": "document"}), FHIR_JSON, 400, "Bundle.type"),
    ("post", "/", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient("MRN-7003")}]}),
     FHIR_JSON, 400, "Bundle.entry[0].request"),
    ("post", "/", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": encounter("urn:uuid:00000000-0000-4000-8000-000000000000", "Practitioner/x"),
         "request": {"method": "POST", "url": "Encounter"}}]}), FHIR_JSON, 400, "Bundle.entry[0].resource.subject"),
    ("delete", "/Patient?shoe-size=44", None, None, 400, "url"),
    ("get", "/_history?_page_before=99999999999999999999999", None, None, 400, "_page_before"),
    ("get", "/Patient/x/_history/99999999999999999999999", None, None, 404, None),
    ("post", "/", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("MRN-7004"), "request": {"method": "POST", "url": "Patient", "ifNoneExist": "shoe-size=44"}}]}),
     FHIR_JSON, 400, "Bundle.entry[0].request.ifNoneExist"),
    ("post", "/", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient?shoe-size=44"}}]}), FHIR_JSON, 400, "Bundle.entry[0].request.url"),
]


@pytest.mark.parametrize("method,path,body,content_type,status,expression", BAD_INPUT,
                         ids=[f"{m} {p[:40]}" for m, p, *_ in BAD_INPUT])
def test_bad_input_is_a_4xx_operation_outcome_with_the_failing_path(store_client, method, path, body, content_type,
                                                                    status, expression):
    kwargs = {"data": body, "content_type": content_type} if body is not None else {}
    response = getattr(store_client, method)(path, **kwargs)
    assert_outcome(response, status, expression)


def test_a_database_outage_is_503_with_retry_after(app):
    # A real engine on a port nothing listens on: every connection is refused, as when PostgreSQL is down.
    app.extensions["store"] = db.engine_for("postgresql+psycopg://postgres@127.0.0.1:1/gateway", migrate=False)
    client = authorised_client(app)
    for response in (client.get("/Patient/x"), client.get("/Patient?family=x"),
                     client.post("/Patient", json=patient("MRN-7101"), content_type=FHIR_JSON),
                     transaction(client, [{"resource": patient("MRN-7102"), "request": {"method": "POST", "url": "Patient"}}]),
                     client.get("/_history")):
        assert_outcome(response, 503)
        assert response.headers["Retry-After"].isdigit()


# -- the CapabilityStatement -----------------------------------------------------------------------------------------
SEARCH_VALUES = {"token": f"{V2_0203}|MR", "date": "ge2019-01-01", "string": "kshlerin", "reference": "Patient/example",
                 "uri": "http://hl7.org/fhir/ValueSet/example"}
INTERACTION_CODES = {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type"}


def _capability(client) -> dict:
    response = client.get("/metadata")
    assert response.status_code == 200 and response.mimetype == FHIR_JSON
    statement = response.get_json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    return statement


def test_capability_every_claimed_search_parameter_of_every_type_answers_200(store_client):
    statement = _capability(store_client)
    claimed = 0
    for resource in statement["rest"][0]["resource"]:
        for param in resource["searchParam"]:
            value = SEARCH_VALUES[param["type"]]
            response = store_client.get(f"/{resource['type']}?{urlencode({param['name']: value})}")
            assert response.status_code == 200, (resource["type"], param["name"], response.get_data(as_text=True))
            assert response.get_json()["type"] == "searchset"
            claimed += 1
    assert claimed > 300


def test_capability_names_the_r4_search_parameters_of_the_clinical_types(store_client):
    claimed = {r["type"]: {p["name"]: p["type"] for p in r["searchParam"]} for r in _capability(store_client)["rest"][0]["resource"]}
    wanted = {
        "Patient": {"identifier": "token", "name": "string", "family": "string", "given": "string", "birthdate": "date",
                    "gender": "token"},
        "Condition": {"onset-date": "date", "clinical-status": "token", "category": "token", "code": "token", "subject": "reference"},
        "MedicationRequest": {"authoredon": "date", "status": "token", "subject": "reference"},
        "MedicationAdministration": {"effective-time": "date", "patient": "reference"},
        "MedicationStatement": {"effective": "date", "status": "token"},
        "Procedure": {"date": "date", "code": "token"}, "Observation": {"date": "date", "code": "token", "category": "token"},
        "Encounter": {"date": "date", "class": "token", "type": "token"}, "DiagnosticReport": {"date": "date", "code": "token"},
    }
    for rtype, params in wanted.items():
        assert params.items() <= claimed[rtype].items(), rtype
        assert {"_id": "token", "_lastUpdated": "date", "identifier": "token"}.items() <= claimed[rtype].items()


def test_capability_every_claimed_interaction_works_on_every_writable_type(store_client):
    statement = _capability(store_client)
    for resource in statement["rest"][0]["resource"]:
        rtype, codes = resource["type"], {i["code"] for i in resource["interaction"]}
        assert codes <= INTERACTION_CODES, rtype
        if "search-type" in codes:
            assert store_client.get(f"/{rtype}").status_code == 200, rtype
        if "history-type" in codes:
            assert store_client.get(f"/{rtype}/_history").status_code == 200, rtype
        if "update" not in codes:
            continue
        made = put(store_client, {"resourceType": rtype, "id": "cap-probe"})
        if made.status_code in (400, 422):
            # A type with required elements refuses an empty body by its paths: it is validated, hence served.
            assert_outcome(made, (400, 422), rtype)
            continue
        assert made.status_code == 201, (rtype, made.get_data(as_text=True))
        _exercise_instance(store_client, rtype, codes)


def _exercise_instance(client, rtype: str, codes: set[str]) -> None:
    url = f"/{rtype}/cap-probe"
    if "read" in codes:
        assert client.get(url).status_code == 200, rtype
    if "vread" in codes:
        assert client.get(f"{url}/_history/1").status_code == 200, rtype
    if "history-instance" in codes:
        assert len(client.get(f"{url}/_history").get_json()["entry"]) == 1, rtype
    if "create" in codes:
        created = client.post(f"/{rtype}", json={"resourceType": rtype}, content_type=FHIR_JSON)
        assert created.status_code == 201, (rtype, created.get_data(as_text=True))
    if "delete" in codes:
        assert client.delete(url).status_code == 204, rtype
        assert client.get(url).status_code == 410, rtype


def test_capability_claims_every_type_and_interaction_that_is_served(store_client):
    statement = _capability(store_client)
    claimed = {r["type"]: {i["code"] for i in r["interaction"]} for r in statement["rest"][0]["resource"]}
    with TYPES_FILE.open(encoding="utf-8", newline="") as handle:
        r4_types = [row["type"] for row in csv.DictReader(handle)]
    for rtype in [*r4_types, "Coding", "HumanName", "Extension"]:
        probe = "patient=x" if rtype == "AuditEvent" else "_id=x"  # the audit trail is listed by patient only
        searchable = store_client.get(f"/{rtype}?{probe}").status_code == 200
        readable = store_client.get(f"/{rtype}/x").status_code == 404 and \
            "not a FHIR R4 resource type" not in store_client.get(f"/{rtype}/x").get_data(as_text=True)
        if rtype not in claimed:
            assert not searchable and not readable, f"{rtype} is served but not in the CapabilityStatement"
        else:
            assert searchable == ("search-type" in claimed[rtype]), rtype
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    assert store_client.get("/?_id=x").status_code in (404, 405)   # search-system is not claimed, nor served
    assert not any("patch" in codes for codes in claimed.values())
    patient_entry = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert [op["name"] for op in patient_entry["operation"]] == ["everything", "export"]
    assert patient_entry["conditionalDelete"] == "single" and patient_entry["versioning"] == "versioned"


def test_capability_audit_event_is_listed_by_patient_and_never_writable(store_client):
    statement = _capability(store_client)
    audit = next(r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent")
    assert {i["code"] for i in audit["interaction"]} == {"search-type"}
    assert [p["name"] for p in audit["searchParam"]] == ["patient"]
    assert store_client.get("/AuditEvent?patient=Patient/example").status_code == 200
