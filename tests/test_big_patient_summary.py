"""A patient with 10,000 resources is summarised: the first seed case, padded with body weights to 10,000
resources in its compartment (built once for the module), answers its treatment lines and its timeline page.
(Its import, `$everything` paging and export are in tests/test_bulk_export.py.)"""
from __future__ import annotations

import json

import databases
import pytest
import redis
from case_files import SEED_CASES
from gateway_setup import authorised_client, gateway_config
from sync_helpers import store_case

from store import reads
from summaries.line_summary import MAX_SUMMARY_RESOURCES

BIG = 10_000
PER_BUNDLE = 2_000
# LOINC 29463-7 "Body weight" (mappings/terminology/loinc.csv cites its sources): no rule of the line engine reads it
BODY_WEIGHT = {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]}


def weights(pid: str, start: int, count: int) -> dict:
    entries = []
    for i in range(start, start + count):
        day = f"20{10 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        resource = {"resourceType": "Observation", "id": f"{pid[:40]}-w{i}", "status": "final", "code": BODY_WEIGHT,
                    "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": day,
                    "valueQuantity": {"value": 50 + i % 40, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
        entries.append({"resource": resource, "request": {"method": "PUT", "url": f"Observation/{resource['id']}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture(scope="module")
def big(redis_url, tmp_path_factory):
    """(client, patient id, the patient's summary before padding) on a SQLite store of this module."""
    from service import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('big-patient')}/store.sqlite3"
    engine = databases.migrated_engine(url)
    redis.Redis.from_url(redis_url).flushdb()  # no cached view of another test's store may answer for this one
    client = authorised_client(create_app(gateway_config(redis_url, url)))
    pid = store_case(client, SEED_CASES[0])
    before = client.get(f"/Patient/{pid}/treatment-lines").get_json()
    pad = BIG - reads.compartment_size(engine, pid)
    for start in range(0, pad, PER_BUNDLE):
        answer = client.post("/", data=json.dumps(weights(pid, start, min(PER_BUNDLE, pad - start))),
                             content_type="application/fhir+json")
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert reads.compartment_size(engine, pid) == BIG <= MAX_SUMMARY_RESOURCES
    return client, pid, before


def test_treatment_lines_of_a_patient_with_10000_resources_are_the_lines_of_their_treatments(big):
    client, pid, before = big
    answer = client.get(f"/Patient/{pid}/treatment-lines")
    assert answer.status_code == 200 and answer.headers["X-Cache"] == "miss"
    summary = answer.get_json()
    assert len(summary["lines"]) == len(before["lines"]) == 4  # 9,9xx body weights change no line
    assert summary["lines"] == before["lines"]
    episodes = client.get(f"/Patient/{pid}/treatment-lines", headers={"Accept": "application/fhir+json"})
    assert episodes.status_code == 200
    assert [e["resource"]["resourceType"] for e in episodes.get_json()["entry"]] == ["EpisodeOfCare"] * 4
    assert client.get(f"/Patient/{pid}/treatment-lines").headers["X-Cache"] == "hit"


def test_the_timeline_page_of_a_patient_with_10000_resources_draws_their_lines(big):
    client, pid, before = big
    answer = client.get(f"/Patient/{pid}/timeline")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "<svg" in page and page.count("Line ") >= len(before["lines"]), page[:500]
