"""Bulk export (Bulk Data IG v2) of the imported Synthea slice: round trip, levels, _type/_since/_typeFilter,
status polling, cancel, files only for the client that asked and only until they expire."""
from __future__ import annotations

import json
import time

import pytest
from bulk_helpers import corpus_counts, corpus_lines, finished_import, identifier_map, start_import, two_clients
from sync_helpers import run_jobs

from registry.procedure_history import procedure_history
from store import reads

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def path_of(url: str) -> str:
    return url.split("localhost", 1)[1]


def kick_off(client, url: str, **query: str) -> str:
    answer = client.get(url, headers=ASYNC, query_string=query)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return path_of(answer.headers["Content-Location"])


def finished_export(client, redis_client, status_url: str) -> dict:
    run_jobs(redis_client)
    answer = client.get(status_url)
    assert answer.status_code == 200, (answer.status_code, answer.get_data(as_text=True))
    assert answer.headers["Expires"]
    return answer.get_json()


def downloaded(client, manifest: dict) -> dict[str, list[dict]]:
    files = {}
    for item in manifest["output"]:
        answer = client.get(path_of(item["url"]))
        assert answer.status_code == 200 and answer.mimetype == "application/fhir+ndjson"
        files[item["type"]] = [json.loads(line) for line in answer.get_data(as_text=True).splitlines()]
        assert len(files[item["type"]]) == item["count"]
    return files


@pytest.fixture
def imported(client, redis_client, sqlite_url):
    manifest = finished_import(client, redis_client, start_import(client, "\n".join(corpus_lines())))
    assert manifest["error"] == []
    return client


def _without_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "meta"}


def _expected(line: str) -> dict:
    """An input line as the store keeps it: its conditional references replaced by the literal ones they name."""
    mapping = identifier_map()
    text = line
    for conditional, literal in mapping.items():
        text = text.replace(json.dumps(conditional), json.dumps(literal))
    return _without_meta(json.loads(text))


def test_export_round_trip_gives_back_every_imported_resource_apart_from_meta(imported, redis_client):
    status = kick_off(imported, "/$export")
    pending = imported.get(status)
    assert pending.status_code == 202 and pending.headers["X-Progress"] and pending.headers["Retry-After"]
    manifest = finished_export(imported, redis_client, status)
    assert manifest["requiresAccessToken"] is True and manifest["error"] == [] and manifest["request"].endswith("/$export")
    files = downloaded(imported, manifest)
    fhir_types = {t: rows for t, rows in files.items() if t != "procedure-history"}
    assert {t: len(rows) for t, rows in fhir_types.items()} == corpus_counts()
    exported = {(r["resourceType"], r["id"]): _without_meta(r) for rows in fhir_types.values() for r in rows}
    for line in corpus_lines():
        r = json.loads(line)
        assert exported[(r["resourceType"], r["id"])] == _expected(line)


def test_export_writes_the_registry_procedure_histories_beside_the_fhir_types(imported, redis_client, sqlite_url):
    from store import db

    manifest = finished_export(imported, redis_client, kick_off(imported, "/Patient/$export"))
    files = downloaded(imported, manifest)
    engine = db.engine_for(sqlite_url)
    patients = [json.loads(line)["id"] for line in corpus_lines() if '"resourceType":"Patient"' in line]
    expected = sum(len(procedure_history(reads.compartment(engine, pid), f"Patient/{pid}")) for pid in patients)
    assert len(files["procedure-history"]) == expected == corpus_counts()["Procedure"]
    assert {"patient", "procedure", "category", "time"} <= set(files["procedure-history"][0])


def test_patient_level_export_holds_only_compartment_types(imported, redis_client):
    manifest = finished_export(imported, redis_client, kick_off(imported, "/Patient/$export"))
    types = {o["type"] for o in manifest["output"]}
    assert "Patient" in types and "Encounter" in types
    assert not types & {"Practitioner", "Organization", "Location", "PractitionerRole"}


def test_type_since_and_type_filter_narrow_the_export(imported, redis_client):
    manifest = finished_export(imported, redis_client, kick_off(imported, "/$export", _type="Patient,Condition"))
    assert {o["type"] for o in manifest["output"]} == {"Patient", "Condition"}
    future = finished_export(imported, redis_client, kick_off(imported, "/$export", _type="Patient", _since="2999-01-01T00:00:00Z"))
    assert future["output"] == []
    lines = [json.loads(line) for line in corpus_lines()]
    code = next(r for r in lines if r["resourceType"] == "Condition")["code"]["coding"][0]
    wanted = sum(1 for r in lines if r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"] == code["code"])
    query = f"Condition?code={code['system']}|{code['code']}"
    filtered = finished_export(imported, redis_client, kick_off(imported, "/$export", _type="Condition", _typeFilter=query))
    assert [(o["type"], o["count"]) for o in filtered["output"]] == [("Condition", wanted)]


def test_group_export_holds_the_members_resources_only(imported, redis_client):
    pid = next(json.loads(line)["id"] for line in corpus_lines() if '"resourceType":"Patient"' in line)
    group = {"resourceType": "Group", "id": "cohort-1", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{pid}"}}]}
    assert imported.put("/Group/cohort-1", data=json.dumps(group), content_type="application/fhir+json").status_code in (200, 201)
    manifest = finished_export(imported, redis_client, kick_off(imported, "/Group/cohort-1/$export", _type="Patient,Encounter"))
    files = downloaded(imported, manifest)
    assert [r["id"] for r in files["Patient"]] == [pid]
    assert all(r["subject"]["reference"] == f"Patient/{pid}" for r in files["Encounter"])
    assert imported.get("/Group/missing/$export", headers=ASYNC).status_code == 404


def test_export_needs_prefer_respond_async(imported):
    answer = imported.get("/$export")
    assert answer.status_code == 400 and "respond-async" in answer.get_json()["issue"][0]["diagnostics"]


def test_delete_on_the_status_url_cancels_the_export(imported, redis_client):
    status = kick_off(imported, "/$export")
    assert imported.delete(status).status_code == 202
    run_jobs(redis_client)
    assert imported.get(status).status_code == 404


def test_export_files_are_served_only_to_the_client_that_asked(redis_url, redis_client, sqlite_url):
    client, other = two_clients(redis_url, sqlite_url, ["system/*.read"])
    finished_import(client, redis_client, start_import(client, "\n".join(corpus_lines()[:5])))
    status = kick_off(client, "/$export")
    manifest = finished_export(client, redis_client, status)
    assert other.get(status).status_code == 404
    assert other.get(path_of(manifest["output"][0]["url"])).status_code == 404
    assert client.get(path_of(manifest["output"][0]["url"])).status_code == 200


def test_export_files_expire(imported, redis_client, monkeypatch):
    manifest = finished_export(imported, redis_client, kick_off(imported, "/$export", _type="Patient"))
    monkeypatch.setenv("GATEWAY_BULK_FILE_TTL_SECONDS", "1")
    time.sleep(1.2)
    assert imported.get(path_of(manifest["output"][0]["url"])).status_code == 410


# -- a patient with 10,000 resources ------------------------------------------------------------------------
BIG = 10_000


def big_patient_lines(pid: str = "big-patient") -> list[str]:
    """One Patient and 9,999 resources of theirs: Observations of LOINC 2345-7 "Glucose [Mass/volume] in Serum or
    Plasma" (loinc.org/LG7967-5 lists it), Conditions and Procedures with codes of the vendored slice."""
    slice_ = [json.loads(line) for line in corpus_lines()]
    condition = next(r for r in slice_ if r["resourceType"] == "Condition")["code"]
    procedure = next(r for r in slice_ if r["resourceType"] == "Procedure")["code"]
    lines = [json.dumps({"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1961-04-02"})]
    for i in range(BIG - 1):
        day = f"20{10 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        subject = {"reference": f"Patient/{pid}"}
        if i % 10 == 0:
            r = {"resourceType": "Condition", "id": f"{pid}-c{i}", "subject": subject, "code": condition, "onsetDateTime": day}
        elif i % 10 == 1:
            r = {"resourceType": "Procedure", "id": f"{pid}-p{i}", "status": "completed", "subject": subject, "code": procedure,
                 "performedDateTime": day}
        else:
            r = {"resourceType": "Observation", "id": f"{pid}-o{i}", "status": "final", "subject": subject, "effectiveDateTime": day,
                 "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7",
                                      "display": "Glucose [Mass/volume] in Serum or Plasma"}]},
                 "valueQuantity": {"value": 70 + i % 90, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
        lines.append(json.dumps(r))
    return lines


def test_a_patient_with_10000_resources_is_imported_paged_in_everything_and_exported(client, redis_client, sqlite_url):
    lines = big_patient_lines()
    manifest = finished_import(client, redis_client, start_import(client, "\n".join(lines), "big.ndjson"))
    assert manifest["error"] == [] and sum(o["count"] for o in manifest["output"]) == BIG
    seen: list[str] = []
    url = "/Patient/big-patient/$everything?_count=1000"
    while url:
        page = client.get(url).get_json()
        assert page["total"] == BIG
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]]
        url = next((path_of(link["url"]) for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == BIG and seen[0] == "Patient/big-patient"
    exported = finished_export(client, redis_client, kick_off(client, "/Patient/$export"))
    counts = {o["type"]: o["count"] for o in exported["output"]}
    assert sum(n for t, n in counts.items() if t != "procedure-history") == BIG
    assert counts["procedure-history"] == counts["Procedure"] == 1000


def test_export_streams_a_type_of_several_pages_in_write_order_with_each_filter_on_both_engines(db_engine, tmp_path):
    from db_fixture_search import remove, store

    from workers import bulk_export

    count = bulk_export.EXPORT_PAGE * 2 + 37  # three pages of the streamed cursor
    with db_engine.begin() as conn:
        for n in range(count):
            patient = f"p{n % 3}"
            store(conn, {"resourceType": "Observation", "id": f"o{n}", "status": "final", "code": {"text": "x"},
                         "subject": {"reference": f"Patient/{patient}"}}, patient, last_updated=1_000 + n)
        store(conn, {"resourceType": "Observation", "id": "orphan", "status": "final", "code": {"text": "x"}}, None, 5_000)
        remove(conn, "Observation", "o5")

    def exported(info: dict, members: set[str] | None = None) -> list[str]:
        path = tmp_path / "Observation.ndjson"
        written = bulk_export._write(path, bulk_export._rows(db_engine, "Observation", info, members))
        ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
        assert written == len(ids)
        return ids

    everything = [f"o{n}" for n in range(count) if n != 5]
    assert exported({"level": "system"}) == [*everything, "orphan"]  # pk order, deleted left out, nothing twice
    assert exported({"level": "patient"}) == everything  # only resources in a patient compartment
    assert exported({"level": "group"}, {"p1"}) == [f"o{n}" for n in range(count) if n % 3 == 1]
    assert exported({"level": "system", "since_ms": 1_000 + count - 10}) == [*everything[-10:], "orphan"]
