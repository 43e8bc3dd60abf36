"""Searches on the clinical types and the normalised procedure history for registries."""
from __future__ import annotations

import csv
import datetime
import io
import json
import time

import pytest
from bundles import stored_patient_id
from case_files import load_case

SCT = "http://snomed.info/sct"


def _dated_patient(client) -> str:
    pid = "dated-1"
    entries = [{"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}}]
    for n, (code, text, when) in enumerate([("287847009", "Distal pancreatectomy", "2010-03-04"),
                                            ("57238002", "TAE of the right hepatic artery", "2011-05"),
                                            ("764677008", "SIRT right lobe", "2013-09-20T10:00:00Z"),
                                            (None, "Ultrasound-guided liver biopsy", "2009-12-01")]):
        procedure = {"resourceType": "Procedure", "identifier": [{"system": "urn:ehr:proc", "value": f"p{n}"}], "status": "completed",
                     "code": {"text": text, **({"coding": [{"system": SCT, "code": code}]} if code else {})},
                     "subject": {"reference": f"Patient/{pid}"}, "performedDateTime": when}
        entries.append({"resource": procedure, "request": {"method": "PUT", "url": f"Procedure?identifier=urn:ehr:proc|p{n}"}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    assert client.post("/Bundle", data=json.dumps(bundle), content_type="application/fhir+json").status_code == 200
    return pid


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [e["resource"]["identifier"][0]["value"] for e in response.get_json()["entry"]]


def test_search_by_subject_code_date_and_identifier(client):
    pid = _dated_patient(client)
    assert sorted(_ids(client.get(f"/Procedure?subject=Patient/{pid}"))) == ["p0", "p1", "p2", "p3"]
    assert _ids(client.get(f"/Procedure?patient={pid}&code={SCT}|764677008")) == ["p2"]
    assert sorted(_ids(client.get(f"/Procedure?subject=Patient/{pid}&date=ge2011-01-01"))) == ["p1", "p2"]
    assert _ids(client.get(f"/Procedure?subject=Patient/{pid}&date=2011")) == ["p1"]
    assert _ids(client.get(f"/Procedure?subject=Patient/{pid}&date=lt2010-01-01")) == ["p3"]
    assert _ids(client.get("/Procedure?identifier=urn:ehr:proc|p0")) == ["p0"]


def test_search_pages_with_next_links_and_last_updated(client):
    pid = _dated_patient(client)
    first = client.get(f"/Procedure?subject=Patient/{pid}&_count=3&_total=accurate").get_json()
    assert first["total"] == 4 and len(first["entry"]) == 3
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(next_url.replace("http://localhost", "")).get_json()
    assert len(second["entry"]) == 1
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=5)).isoformat()
    assert client.get("/Procedure", query_string={"_lastUpdated": f"gt{later}"}).get_json()["total"] == 0
    assert client.get("/Procedure", query_string={"_lastUpdated": "gt2020-01-01"}).get_json()["total"] == 4


def test_condition_observation_and_medication_searches_on_seed_case(client):
    response = client.post("/cases?store=true", data=json.dumps(load_case("case1-vipoma")), content_type="application/json")
    pid = stored_patient_id(response.get_json())
    assert len(_ids(client.get(f"/Condition?subject=Patient/{pid}&code={SCT}|94381002"))) == 1
    assert len(_ids(client.get(f"/Observation?patient={pid}&code=http://loinc.org|1695-6"))) == 1
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert len(_ids(client.get(f"/MedicationStatement?subject=Patient/{pid}&code={rxnorm}|7617"))) == 2


@pytest.mark.parametrize("query", ["date=yesterday", "foo=bar", "_count=-1", "_count=x"])
def test_bad_search_parameters_get_operation_outcome(client, query):
    response = client.get(f"/Procedure?{query}")
    assert response.status_code == 400 and response.get_json()["resourceType"] == "OperationOutcome"


def test_procedure_history_in_time_order_with_categories(client):
    pid = _dated_patient(client)
    records = client.get(f"/Patient/{pid}/procedure-history").get_json()["procedures"]
    assert [r["identifier"] for r in records] == ["p3", "p0", "p1", "p2"]
    assert [r["category"] for r in records] == ["biopsy", "resection", "embolization", "radioembolization"]
    assert [r["time"]["precision"] for r in records] == ["day", "day", "month", "day"]
    assert records[0]["category_source"] == "text" and records[1]["code"]["coding"][0]["code"] == "287847009"


def test_seed_case_procedure_history_keeps_relative_times_segments_and_not_done(client):
    response = client.post("/cases?store=true", data=json.dumps(load_case("case2-insulinoma")), content_type="application/json")
    pid = stored_patient_id(response.get_json())
    records = client.get(f"/Patient/{pid}/procedure-history").get_json()["procedures"]
    assert [r["identifier"].split("/")[1] for r in records] == [
        "caudal-pancreatectomy", "liver-resection-ivb", "liver-resection-iii", "tae-series",
        "tae-left-hepatic-artery", "sirt-right-hepatic-artery"]  # the ICU stay is an Encounter, not a procedure
    ivb = records[1]
    assert ivb["category"] == "resection" and ivb["segments"] == ["IVb"] and ivb["time"]["frame"] == "age"
    relative = ivb["time"]["relative"]
    assert relative["relationship"] == "after-start" and relative["target"].startswith("Procedure/")
    assert relative["offset"] == {"value": 2, "unit": "a", "range": None} and ivb["time"]["approximate"] is True
    assert ivb["time"]["start"] == {"date": None, "age": {"low": 70, "high": None, "unit": "a"}, "precision": "unknown"}
    assert ivb["bodySite"] == ["Liver segment IVb"]  # the site and its segment code are one site
    assert [c["code"] for c in ivb["sites"][0]["snomed"]] == ["10200004", "277958008"]
    assert records[0]["sites"][0]["topography"] == {"code": "C25.2", "display": "Tail of pancreas"}
    assert records[0]["intent"] == "Curative - procedure intent"
    assert records[3]["sessions"] == 3 and records[4]["complications"] == ["Upper gastrointestinal bleeding after embolization"]
    case1 = client.post("/cases?store=true", data=json.dumps(load_case("case1-vipoma")), content_type="application/json")
    pid1 = stored_patient_id(case1.get_json())
    planned = [r for r in client.get(f"/Patient/{pid1}/procedure-history").get_json()["procedures"] if r["status"] == "not-done"]
    assert planned[0]["statusReason"] == "Dismissed due to an expected small future liver remnant"


def test_procedure_history_as_csv_and_as_fhir_bundle(client):
    pid = _dated_patient(client)
    text = client.get(f"/Patient/{pid}/procedure-history", headers={"Accept": "text/csv"}).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["category"] for r in rows] == ["biopsy", "resection", "embolization", "radioembolization"]
    assert [r["start_date"] for r in rows] == ["2009-12-01", "2010-03-04", "2011-05", "2013-09-20T10:00:00Z"]
    assert [r["precision"] for r in rows] == ["day", "day", "month", "day"]
    bundle = client.get(f"/Patient/{pid}/procedure-history", headers={"Accept": "application/fhir+json"}).get_json()
    assert bundle["resourceType"] == "Bundle" and [e["resource"]["identifier"][0]["value"] for e in bundle["entry"]] == ["p3", "p0", "p1", "p2"]


def test_seed_case_csv_has_one_value_per_column_and_sites_once(client):
    response = client.post("/cases?store=true", data=json.dumps(load_case("case2-insulinoma")), content_type="application/json")
    pid = stored_patient_id(response.get_json())
    text = client.get(f"/Patient/{pid}/procedure-history", headers={"Accept": "text/csv"}).get_data(as_text=True)
    rows = {r["identifier"].split("/")[1]: r for r in csv.DictReader(io.StringIO(text))}
    assert not any(";" in row[c] for row in rows.values() for c in ("body_site", "segment", "complication", "start_age_low"))
    ivb = rows["liver-resection-ivb"]
    assert (ivb["site_count"], ivb["body_site"], ivb["segment"]) == ("1", "Liver segment IVb", "IVb")
    assert (ivb["start_age_low"], ivb["start_age_high"], ivb["age_unit"]) == ("70", "", "a")
    assert (ivb["relative_relationship"], ivb["offset_value"], ivb["offset_unit"], ivb["approximate"]) == ("after-start", "2", "a", "True")
    assert ivb["relative_target"].startswith("Procedure/")
    assert rows["caudal-pancreatectomy"]["topography_icdo3"] == "C25.2"
    assert rows["tae-left-hepatic-artery"]["complication"] == "Upper gastrointestinal bleeding after embolization"


def test_registry_pull_streams_ndjson_for_patients_changed_since(client):
    _dated_patient(client)
    time.sleep(0.01)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    client.post("/cases?store=true", data=json.dumps(load_case("case2-insulinoma")), content_type="application/json")
    everyone = [json.loads(line) for line in client.get("/procedure-history").get_data(as_text=True).splitlines()]
    changed = [json.loads(line) for line in client.get("/procedure-history", query_string={"_since": stamp}).get_data(as_text=True).splitlines()]
    assert len(everyone) == 4 + 6 and len(changed) == 6  # case 2: six procedures (the ICU stay is an Encounter)
    assert {r["patient"] for r in changed} != {"Patient/dated-1"}
    assert client.get("/procedure-history?_since=nope").status_code == 400
