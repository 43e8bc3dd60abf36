"""Push, re-push, incremental pull and conflicts against the real sekmet server and a real Redis; jobs run
in-process with a burst worker (a separate process adds nothing to these cases)."""
from __future__ import annotations

import json

import pytest

from conftest import SEED_CASES
from test_sync_helpers import (CLINICAL_TYPES, enqueue, job_view, run_jobs, server_counts, store_case,  # noqa: F401
                               sync_env)
from workers import sync_state

EXPECTED = {"case1-vipoma": {"Patient": 1, "Condition": 8, "Procedure": 4, "MedicationStatement": 4, "Observation": 16, "Provenance": 1},
            "case2-insulinoma": {"Patient": 1, "Condition": 13, "Procedure": 7, "MedicationStatement": 8, "Observation": 7, "Provenance": 1}}
BOTH = {t: sum(EXPECTED[c][t] for c in SEED_CASES) for t in CLINICAL_TYPES}


@pytest.fixture
def upstream(fhir_isolated, sync_env):
    sync_env(fhir_isolated.base_url, SYNC_BATCH_SIZE="10")
    return fhir_isolated


def push(client, redis_client, body: dict | None = None) -> dict:
    job_id = enqueue(client, "/sync/push", body or {})
    run_jobs(redis_client)
    view = job_view(client, job_id)
    assert view["status"] == "finished", view
    return view


def upstream_copy(server, rtype: str, fact: str) -> dict:
    """The upstream resource carrying a case-fact identifier ending in `fact`."""
    bundle = server.request("GET", f"{rtype}?_count=200").body
    return next(e["resource"] for e in bundle.get("entry", [])
                if any(i["value"].endswith(fact) for i in e["resource"].get("identifier", [])))


def test_push_both_seed_cases_then_repush_creates_no_duplicates(client, redis_client, upstream):
    for name in SEED_CASES:
        store_case(client, name)
    first = push(client, redis_client)
    assert server_counts(upstream.server) == BOTH
    total = sum(BOTH.values())
    assert first["result"]["created"] == total and first["result"]["errors"] == [] and first["result"]["conflicts"] == []
    assert first["progress"] == {"done": total, "total": total}
    # References arrive as upstream ids: every Condition's subject is an upstream Patient.
    patients = {e["resource"]["id"] for e in upstream.request("GET", "Patient").body["entry"]}
    conditions = upstream.request("GET", "Condition?_count=100").body["entry"]
    assert {c["resource"]["subject"]["reference"] for c in conditions} == {f"Patient/{p}" for p in patients}

    # Re-push of one patient, then of everything again (the watermark is reset to force it): nothing new.
    pid = redis_client.hkeys("sync:default:map")  # the id map is filled
    assert pid
    redis_client.delete("sync:default:push-wm")
    again = push(client, redis_client)
    assert server_counts(upstream.server) == BOTH
    assert again["result"]["unchanged"] == total, again["result"]
    assert again["result"]["created"] == again["result"]["updated"] == 0
    # An identical PUT would bump the upstream version; nothing was written, so every version is still 1.
    versions = {e["resource"]["meta"]["versionId"] for e in upstream.request("GET", "Observation?_count=100").body["entry"]}
    assert versions == {"1"}


def test_push_without_patient_sends_only_patients_changed_since_last_push(client, redis_client, upstream):
    pid1 = store_case(client, SEED_CASES[0])
    push(client, redis_client)
    store_case(client, SEED_CASES[1])
    second = push(client, redis_client)
    assert second["result"]["patients"] == 1
    assert second["result"]["created"] == sum(EXPECTED[SEED_CASES[1]].values())
    one = push(client, redis_client, {"patient": f"Patient/{pid1}"})
    assert one["result"]["patients"] == 1 and one["result"]["unchanged"] == sum(EXPECTED[SEED_CASES[0]].values())


def test_local_change_is_pushed_as_update(client, redis_client, upstream):
    pid = store_case(client, SEED_CASES[0])
    push(client, redis_client)
    case = json.loads(json.dumps(__import__("conftest").load_case(SEED_CASES[0])))
    case["conditions"][2]["text"] = "History of diarrhoea (edited upstream-bound)"
    changed = "edited upstream-bound"
    client.post("/cases?store=true", data=json.dumps(case), content_type="application/json")
    result = push(client, redis_client, {"patient": f"Patient/{pid}"})["result"]
    assert result["updated"] == 1 and result["created"] == 0 and result["conflicts"] == [], result
    assert server_counts(upstream.server) == EXPECTED[SEED_CASES[0]]
    assert changed in json.dumps(upstream.request("GET", "Condition?_count=100").body)
