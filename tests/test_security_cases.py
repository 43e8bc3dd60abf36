"""Issue 15, "a new case reusing a caseId overwrites another patient": stored cases are scoped by their source
(the authenticated client), and a source reusing its own caseId for another person gets 409. On both engines."""
from __future__ import annotations

import copy
import json

import pytest
from case_files import load_case
from gateway_setup import gateway_config

from mappings.references import (
    CASE_SYSTEM,
    FACT_SYSTEM,
    MAX_SOURCE_SEGMENT,
    fact_system,
    source_segment,
)
from service.auth import key_hash

SCOPES = ["system/*.read", "system/*.write"]
SOURCES = {"ehr-a": "key-of-ehr-a", "registry/b": "key-of-registry-b"}  # a '/' in a name must not add a path level


@pytest.fixture
def sources(redis_url, redis_client, db_engine, database_url):
    """One gateway on each engine, a test client per source."""
    from service import create_app

    keys = [{"client": name, "sha256": key_hash(key), "scopes": SCOPES} for name, key in SOURCES.items()]
    app = create_app(gateway_config(redis_url, database_url, API_KEYS=json.dumps(keys)))
    clients = {}
    for name, key in SOURCES.items():
        clients[name] = app.test_client()
        clients[name].environ_base["HTTP_X_API_KEY"] = key
    return clients


def _store(client, case: dict):
    return client.post("/cases?store=true", data=json.dumps(case), content_type="application/json")


def _patient(response) -> str:
    assert response.status_code == 200, response.get_json()
    return next(e["fullUrl"] for e in response.get_json()["entry"] if e["fullUrl"].startswith("Patient/"))


def _etags(response) -> dict[str, str]:
    """Version tags of the clinical resources (the case's Provenance records each submission's time)."""
    return {e["fullUrl"]: e["response"]["etag"] for e in response.get_json()["entry"] if not e["fullUrl"].startswith("Provenance/")}


def test_another_source_reusing_a_caseid_gets_its_own_case_and_never_touches_the_first(sources):
    a, b = sources["ehr-a"], sources["registry/b"]
    first = _store(a, load_case("case1-vipoma"))
    other = copy.deepcopy(load_case("case1-vipoma"))  # the same caseId, another person, another report
    other["patient"]["sex"] = "male"
    other["observations"][0]["text"] = "a finding of registry b"
    second = _store(b, other)
    pid_a, pid_b = _patient(first), _patient(second)
    assert pid_a != pid_b
    assert not {e["fullUrl"] for e in first.get_json()["entry"]} & {e["fullUrl"] for e in second.get_json()["entry"]}
    patient_a = a.get(f"/{pid_a}").get_json()
    assert patient_a["gender"] == "female" and patient_a["meta"]["versionId"] == "1"
    assert a.get(f"/{pid_b}").get_json()["gender"] == "male"
    # A's case is exactly as A stored it: re-sending it writes nothing.
    assert _etags(_store(a, load_case("case1-vipoma"))) == _etags(first)
    assert a.get("/Patient?_summary=count").get_json()["total"] == 2


def test_the_same_source_resubmitting_a_case_creates_no_new_version(sources):
    a = sources["ehr-a"]
    first, again = _store(a, load_case("case2-insulinoma")), _store(a, load_case("case2-insulinoma"))
    assert len(_etags(first)) > 30 and _etags(again) == _etags(first)
    assert set(_etags(again).values()) == {'W/"1"'}


def test_a_correction_by_the_same_source_updates_the_case_in_place(sources):
    a = sources["ehr-a"]
    pid = _patient(_store(a, load_case("case1-vipoma")))
    corrected = copy.deepcopy(load_case("case1-vipoma"))
    corrected["patient"]["birthDate"] = "1960"
    assert _patient(_store(a, corrected)) == pid
    patient = a.get(f"/{pid}").get_json()
    assert patient["birthDate"] == "1960" and patient["meta"]["versionId"] == "2"


@pytest.mark.parametrize("change, path", [
    ({"sex": "male"}, "patient.sex"),
    ({"birthDate": "1971-02-03"}, "patient.birthDate"),
])
def test_the_same_source_reusing_a_caseid_for_another_patient_gets_409(sources, change, path):
    a = sources["ehr-a"]
    case = copy.deepcopy(load_case("case1-vipoma"))
    case["patient"]["birthDate"] = "1960-05-06"
    pid = _patient(_store(a, case))
    someone_else = copy.deepcopy(case)
    someone_else["patient"].update(change)
    refused = _store(a, someone_else)
    assert refused.status_code == 409, refused.get_json()
    issue = refused.get_json()["issue"][0]
    assert issue["code"] == "conflict" and issue["expression"] == [path]
    assert "pnet-sirt-case-1" in issue["diagnostics"] and "new caseId" in issue["diagnostics"]
    patient = a.get(f"/{pid}").get_json()
    assert (patient["gender"], patient["birthDate"], patient["meta"]["versionId"]) == ("female", "1960-05-06", "1")


def test_stored_identifiers_name_the_source_while_the_mapping_stays_source_neutral(sources):
    a = sources["ehr-a"]
    mapped = a.post("/cases", data=json.dumps(load_case("case1-vipoma")), content_type="application/json").get_json()
    assert {e["resource"]["identifier"][0]["system"] for e in mapped["entry"] if "identifier" in e["resource"]} == {FACT_SYSTEM}
    pid = _patient(_store(a, load_case("case1-vipoma")))
    stored = a.get(f"/{pid}").get_json()["identifier"][0]
    assert stored == {"system": f"{FACT_SYSTEM}/ehr-a", "value": "pnet-sirt-case-1/patient"}
    provenance = a.get("/Provenance").get_json()["entry"][0]["resource"]
    assert provenance["entity"][0]["what"]["identifier"] == {"system": f"{CASE_SYSTEM}/ehr-a", "value": "pnet-sirt-case-1"}
    assert {t["identifier"]["system"] for t in provenance["target"]} == {f"{FACT_SYSTEM}/ehr-a"}
    found = a.get(f"/Patient?identifier={FACT_SYSTEM}/ehr-a|pnet-sirt-case-1/patient").get_json()
    assert [e["resource"]["id"] for e in found["entry"]] == [pid.split("/")[1]]


def test_source_names_become_one_path_segment_each_and_never_collide():
    assert fact_system("registry/b") == f"{FACT_SYSTEM}/registry%2Fb" != fact_system("registry") + "/b"
    assert source_segment("a|b,c") == "a%7Cb%2Cc"  # no search separators in the system
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    assert source_segment(long_a) != source_segment(long_b)
    assert len(source_segment(long_a)) <= MAX_SOURCE_SEGMENT and len(fact_system(long_a)) < 255  # the index keeps 255
    assert fact_system(None) == FACT_SYSTEM
