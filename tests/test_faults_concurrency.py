"""Two gateway processes and two workers at once on the same patients: EHR writes through both gateways while
pushes run; the gateway store and the upstream end exactly equal, nothing lost, nothing doubled."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from conftest import SEED_CASES, TEST_API_KEY, load_case
from live_gateway import live_gateway
from reliability import record
from test_sync_helpers import FAST_ENV, server_counts, start_worker, stop_worker, wait_for

pytestmark = pytest.mark.faults
WRITES_PER_GATEWAY = 12


def _observation(pid: str, gateway: int, n: int) -> dict:
    value = f"g{gateway}-{n}"
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"lab {value}"},
                     "identifier": [{"system": "urn:concurrency-test", "value": f"{pid}-{value}"}],
                     "subject": {"reference": f"Patient/{pid}"}},
        "request": {"method": "PUT", "url": f"Observation?identifier=urn:concurrency-test|{pid}-{value}"}}]}


def test_two_gateways_and_two_workers_on_the_same_patients_end_exact(redis_url, redis_client, fhir_isolated, tmp_path):
    env = {**FAST_ENV, "SYNC_UPSTREAM_URL": fhir_isolated.base_url, "SYNC_BATCH_SIZE": "7"}
    workers = [start_worker(redis_url, env, tmp_path / f"w{i}.log", f"w-concurrent-{i}") for i in range(2)]
    try:
        with live_gateway(redis_url, **env) as first, live_gateway(redis_url, **env) as second:
            sessions = []
            for _ in range(2):
                session = requests.Session()
                session.headers.update({"X-API-Key": TEST_API_KEY, "Content-Type": "application/fhir+json"})
                sessions.append(session)
            pids = [sessions[0].post(f"{first}/cases?store=true", data=json.dumps(load_case(name)),
                                     headers={"Content-Type": "application/json"}).json()["entry"][0]["fullUrl"].split("/")[1]
                    for name in SEED_CASES]
            jobs, failures = [], []

            def writer(index: int, base: str) -> None:
                for n in range(WRITES_PER_GATEWAY):
                    for pid in pids:
                        answer = sessions[index].post(f"{base}/Bundle", data=json.dumps(_observation(pid, index, n)))
                        if answer.status_code != 200:
                            failures.append(answer.status_code)
                    if n % 4 == 3:
                        pushed = sessions[index].post(f"{base}/sync/push", json={"patient": f"Patient/{pids[n % 2]}"})
                        jobs.append(pushed.json()["id"])

            threads = [threading.Thread(target=writer, args=(i, base)) for i, base in enumerate((first, second))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert failures == []
            jobs.append(sessions[1].post(f"{second}/sync/push", json={}).json()["id"])  # everything, after the writes

            def all_done():
                states = [sessions[0].get(f"{first}/jobs/{job}").json()["status"] for job in jobs]
                return all(s in ("finished", "failed") for s in states) and states

            states = wait_for(all_done, 120, 0.3, "the push jobs")
            assert set(states) == {"finished"}, states
            held_here = {t: sessions[0].get(f"{first}/{t}", params={"_count": 1}).json()["total"]
                         for t in ("Condition", "Procedure", "MedicationStatement", "Observation")}
    finally:
        for proc in workers:
            stop_worker(proc)
    upstream = server_counts(fhir_isolated.server)
    expected_observations = sum(len(load_case(n).get("observations", [])) + len(load_case(n).get("outcomes", [])) for n in SEED_CASES) \
        + 2 * WRITES_PER_GATEWAY * len(SEED_CASES)
    assert held_here["Observation"] == expected_observations
    for rtype, count in held_here.items():
        assert upstream[rtype] == count, (rtype, upstream[rtype], count)
    record("Two gateways and two workers at once on the same patients",
           f"{2 * WRITES_PER_GATEWAY * len(SEED_CASES)} EHR writes through 2 gateway processes, {len(jobs)} push jobs on 2 workers",
           f"gateway store: {held_here['Observation']} Observation, {held_here['Condition']} Condition",
           f"upstream: {upstream['Observation']} Observation, {upstream['Condition']} Condition", None, "two-gateways-two-workers")
