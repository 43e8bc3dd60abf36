"""Push, re-push, incremental pull and conflicts against the real sekmet server and a real Redis; jobs run
in-process with a burst worker (a separate process adds nothing to these cases)."""
from __future__ import annotations

import json

import pytest

from case_files import SEED_CASES, load_case
from sync_helpers import (BOTH, EXPECTED, PULLED, enqueue, forget_push_watermark, job_view, mapped_upstream_id, run_jobs,
                          server_counts, store_case)


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


def local_patients(client) -> list[str]:
    return [e["resource"]["id"] for e in client.get("/Patient?_count=100").get_json()["entry"]]


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
    assert all(mapped_upstream_id(f"Patient/{p}") for p in local_patients(client))  # the id map is filled
    forget_push_watermark()
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
    case = load_case(SEED_CASES[0])
    case["conditions"][2]["text"] = "History of diarrhoea (edited upstream-bound)"
    changed = "edited upstream-bound"
    client.post("/cases?store=true", data=json.dumps(case), content_type="application/json")
    # The edited Condition changed locally, and so did the Provenance when its recorded time moved on.
    changed_locally = [e for e in client.get(f"/Patient/{pid}/$everything").get_json()["entry"]
                       if e["resource"]["meta"]["versionId"] != "1"]
    assert {e["resource"]["resourceType"] for e in changed_locally} - {"Provenance"} == {"Condition"}
    result = push(client, redis_client, {"patient": f"Patient/{pid}"})["result"]
    assert result["updated"] == len(changed_locally) and result["created"] == 0 and result["conflicts"] == [], result
    assert server_counts(upstream.server) == EXPECTED[SEED_CASES[0]]
    assert changed in json.dumps(upstream.request("GET", "Condition?_count=100").body)


def _edited_case(name: str, condition_index: int, text: str) -> dict:
    case = load_case(name)
    case["conditions"][condition_index]["text"] = text
    return case


def _condition_with_text(server, fragment: str) -> list[dict]:
    return [e["resource"] for e in server.request("GET", "Condition?_count=100").body["entry"]
            if fragment in json.dumps(e["resource"])]


def test_pull_brings_back_only_upstream_changes_in_one_request_per_type(client, redis_client, fhir_isolated, sync_env):
    from fault_proxy import FaultProxy
    from workers.pull import PULL_TYPES

    with FaultProxy(fhir_isolated.base_url) as proxy:
        # The paged search path (sekmet also offers $export: tests/test_sync_bulk_pull.py covers that one).
        sync_env(proxy.base_url, SYNC_BATCH_SIZE="50", SYNC_UPSTREAM_EXPORT="off")
        pid = store_case(client, SEED_CASES[0])
        push(client, redis_client)
        first = _pull(client, redis_client)["result"]
        assert first["created"] == first["updated"] == 0 and first["duplicates"] == PULLED[SEED_CASES[0]]
        before = client.get(f"/Patient/{pid}/$everything")
        assert client.get(f"/Patient/{pid}/$everything").headers["X-Cache"] == "hit"

        # The hospital edits one of our Observations and adds one of its own (no identifier we know).
        obs = fhir_isolated.request("GET", "Observation?_count=1").body["entry"][0]["resource"]
        obs["note"] = [{"text": "re-read by hospital pathologist"}]
        assert fhir_isolated.request("PUT", f"Observation/{obs['id']}", obs).status == 200
        upstream_pid = mapped_upstream_id(f"Patient/{pid}")
        new = {"resourceType": "Observation", "status": "final", "code": {"text": "Chromogranin A"},
               "subject": {"reference": f"Patient/{upstream_pid}"}, "valueQuantity": {"value": 321, "unit": "ng/mL"}}
        assert fhir_isolated.request("POST", "Observation", new).status == 201

        proxy.reset_log()
        second = _pull(client, redis_client)["result"]
        assert (second["created"], second["updated"], second["conflicts"], second["errors"]) == (1, 1, [], [])
        assert proxy.count("GET") == len(PULL_TYPES) == second["requests"]
        after = client.get(f"/Patient/{pid}/$everything")
        assert after.headers["X-Cache"] == "miss"  # the merge went through the store: the cached bundle is gone
        text = after.get_data(as_text=True)
        assert "re-read by hospital pathologist" in text and "Chromogranin A" in text
        assert len(after.get_json()["entry"]) == len(before.get_json()["entry"]) + 1

        proxy.reset_log()
        third = _pull(client, redis_client)["result"]
        assert (third["created"], third["updated"]) == (0, 0)
        assert proxy.count("GET") == len(PULL_TYPES)  # nothing changed: one request per type


def _pull(client, redis_client, body: dict | None = None) -> dict:
    job_id = enqueue(client, "/sync/pull", body or {})
    run_jobs(redis_client)
    view = job_view(client, job_id)
    assert view["status"] == "finished", view
    return view


def test_pull_of_one_patient_only_asks_for_that_patient(client, redis_client, upstream):
    pid1 = store_case(client, SEED_CASES[0])
    store_case(client, SEED_CASES[1])
    push(client, redis_client)
    result = _pull(client, redis_client, {"patient": f"Patient/{pid1}"})["result"]
    assert result["duplicates"] == PULLED[SEED_CASES[0]]


def test_change_on_both_sides_is_a_conflict_and_resolving_keeps_the_chosen_side(client, redis_client, upstream):
    name = SEED_CASES[0]
    store_case(client, name)
    push(client, redis_client)
    (remote,) = _condition_with_text(upstream, "History of diarrhoea")
    remote["code"]["text"] = "History of diarrhoea (hospital edit)"
    assert upstream.request("PUT", f"Condition/{remote['id']}", remote).status == 200
    client.post("/cases?store=true", data=json.dumps(_edited_case(name, 2, "History of diarrhoea (gateway edit)")),
                content_type="application/json")

    result = push(client, redis_client)["result"]
    assert len(result["conflicts"]) == 1  # (the Provenance may update too: its recorded time moves on re-store)
    assert _condition_with_text(upstream, "hospital edit")  # not overwritten
    listed = client.get("/sync/conflicts").get_json()
    assert listed["total"] == 1
    conflict = listed["conflicts"][0]
    assert conflict["id"] == result["conflicts"][0]["id"] and "code.text" in conflict["paths"]
    assert "hospital edit" in json.dumps(conflict["upstreamCopy"]) and "gateway edit" in json.dumps(conflict["local"])

    answer = client.post(f"/sync/conflicts/{conflict['id']}/resolve", data=json.dumps({"keep": "local"}),
                         content_type="application/json")
    assert answer.status_code == 202
    run_jobs(redis_client)
    assert job_view(client, answer.get_json()["id"])["result"]["updated"] == 1
    assert _condition_with_text(upstream, "gateway edit") and not _condition_with_text(upstream, "hospital edit")
    assert client.get("/sync/conflicts").get_json()["total"] == 0
    again = client.post(f"/sync/conflicts/{conflict['id']}/resolve", data=json.dumps({"keep": "local"}),
                        content_type="application/json")
    assert again.status_code == 409 and again.get_json()["resourceType"] == "OperationOutcome"


def test_upstream_only_change_wins_on_push(client, redis_client, upstream):
    pid = store_case(client, SEED_CASES[0])
    push(client, redis_client)
    (remote,) = _condition_with_text(upstream, "History of diarrhoea")
    remote["code"]["text"] = "History of diarrhoea (hospital correction)"
    upstream.request("PUT", f"Condition/{remote['id']}", remote)
    result = push(client, redis_client, {"patient": f"Patient/{pid}"})["result"]
    assert result["upstream_wins"] == 1 and result["conflicts"] == [] and result["updated"] == 0
    assert "hospital correction" in client.get(f"/Patient/{pid}/$everything").get_data(as_text=True)
    # Now in sync: the next push changes nothing on either side.
    assert push(client, redis_client, {"patient": f"Patient/{pid}"})["result"]["unchanged"] == sum(EXPECTED[SEED_CASES[0]].values())
