"""Treatment lines over HTTP: computed by an RQ job after each write, cached with the patient's bundle,
served as JSON and as FHIR EpisodeOfCare, and as cohort NDJSON and aggregate for registries."""
from __future__ import annotations

import json

import pytest
from bundles import stored_patient_id
from rq import Queue, SimpleWorker

from case_files import DATA, load_case
from workers.queues import SUMMARIES_QUEUE as QUEUE


def _store(client, name: str) -> str:
    response = client.post("/cases?store=true", data=json.dumps(load_case(name)), content_type="application/json")
    assert response.status_code == 200
    return stored_patient_id(response.get_json())


def _shape(summary: dict) -> list[tuple]:
    return [(line["number"], line["modality"], tuple(line["classes"]), (line["endReason"] or {}).get("code")) for line in summary["lines"]]


@pytest.mark.parametrize("name", ["case1-vipoma", "case2-insulinoma"])
def test_lines_of_a_stored_case_agree_with_the_golden_summary(client, name):
    pid = _store(client, name)
    summary = client.get(f"/Patient/{pid}/treatment-lines").get_json()
    golden = json.loads((DATA / name / "expected-lines.json").read_text(encoding="utf-8"))
    assert _shape(summary) == _shape(golden) and len(summary["lines"]) == 4
    assert summary["rulePackVersion"] == golden["rulePackVersion"]


def test_a_write_queues_the_recomputation_and_the_worker_fills_the_cache(client, redis_client):
    pid = _store(client, "case2-insulinoma")
    queue = Queue(QUEUE, connection=redis_client)
    assert queue.count >= 1
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    assert queue.count == 0
    assert client.get(f"/Patient/{pid}/treatment-lines").headers["X-Cache"] == "hit"


def test_lines_are_invalidated_with_the_patient_bundle(client):
    pid = _store(client, "case1-vipoma")
    first = client.get(f"/Patient/{pid}/treatment-lines")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "MedicationStatement"},
              "resource": {"resourceType": "MedicationStatement", "status": "active", "subject": {"reference": f"Patient/{pid}"},
                           "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "141704"}]},
                           "effectivePeriod": {"start": "2030-01-01"}}}]}
    assert client.post("/Bundle", data=json.dumps(bundle), content_type="application/fhir+json").status_code == 200
    second = client.get(f"/Patient/{pid}/treatment-lines")
    assert second.headers["ETag"] != first.headers["ETag"] and second.headers["X-Cache"] == "miss"


def test_lines_as_fhir_episodes_of_care(client):
    pid = _store(client, "case2-insulinoma")
    bundle = client.get(f"/Patient/{pid}/treatment-lines", headers={"Accept": "application/fhir+json"}).get_json()
    episodes = [e["resource"] for e in bundle["entry"]]
    assert len(episodes) == 4 and all(e["resourceType"] == "EpisodeOfCare" for e in episodes)
    assert all(any(c["code"] == "C133518" for t in e["type"] for c in t["coding"]) for e in episodes)
    assert all(e["patient"]["reference"] == f"Patient/{pid}" for e in episodes)


def test_cohort_ndjson_and_aggregate(client):
    for name in ("case1-vipoma", "case2-insulinoma"):
        _store(client, name)
    rows = [json.loads(line) for line in client.get("/treatment-lines").get_data(as_text=True).splitlines()]
    assert len(rows) == 2 and all(len(r["lines"]) == 4 for r in rows)
    groups = client.get("/treatment-lines/aggregate").get_json()["groups"]
    assert sum(g["count"] for g in groups) == 8 and {g["line"] for g in groups} == {1, 2, 3, 4}
    assert client.get("/treatment-lines?_since=not-a-date").status_code == 400
    assert client.get("/Patient/nobody/treatment-lines").status_code == 404
