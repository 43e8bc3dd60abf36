"""Concurrency on the store of record, through real gateway processes sharing one database:
- twenty conditional creates of one identifier at the same instant, through two gateways, make exactly one
  resource (PostgreSQL: advisory lock on the criteria; SQLite: BEGIN IMMEDIATE on one file);
- on PostgreSQL, two gateways and two workers at once on the same patients: EHR writes through both gateways
  while pushes run; the database holds every write once, and the upstream ends exactly equal to it."""
from __future__ import annotations

import json
import threading

import pytest
import requests
from bundles import stored_patient_id
from case_files import SEED_CASES, load_case
from databases import create_postgres_database, drop_postgres_database
from fault_load import patient_bundle, session
from live_gateway import live_gateway
from reliability import record
from sqlalchemy import func, select
from polling import wait_for
from sync_helpers import FAST_ENV, server_counts, start_worker, stop_worker

from store import db
from store.schema import idx_token, resource_versions, resources

pytestmark = pytest.mark.faults
RACERS = 20
WRITES_PER_GATEWAY = 12
SYSTEM = "urn:concurrency-test"


def _lab(pid: str, value: str) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": f"lab {value}"},
            "identifier": [{"system": SYSTEM, "value": value}], "subject": {"reference": f"Patient/{pid}"}}


def _conditional_create(s: requests.Session, base: str, pid: str, index: int) -> tuple[int, str]:
    """Even racers use the REST create with If-None-Exist, odd ones a transaction entry with ifNoneExist."""
    criteria = f"identifier={SYSTEM}|the-one"
    if index % 2 == 0:
        answer = s.post(f"{base}/Observation", data=json.dumps(_lab(pid, "the-one")), headers={"If-None-Exist": criteria})
        return answer.status_code, answer.headers.get("Location", "")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _lab(pid, "the-one"), "request": {"method": "POST", "url": "Observation", "ifNoneExist": criteria}}]}
    answer = s.post(f"{base}/Bundle", data=json.dumps(bundle))
    if answer.status_code != 200:
        return answer.status_code, ""
    response = answer.json()["entry"][0]["response"]
    return int(response["status"].split()[0]), response["location"]


def _count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_twenty_concurrent_conditional_creates_through_two_gateways_make_one_resource(redis_url, redis_client, db_engine,
                                                                                      database_url):
    pid = "race-p1"
    with live_gateway(redis_url, database_url=database_url) as first, live_gateway(redis_url, database_url=database_url) as second:
        sessions = [session() for _ in range(RACERS)]
        assert sessions[0].post(f"{first}/Bundle", json=patient_bundle(pid)).status_code == 200
        for s, base in zip(sessions, (first, second) * RACERS):
            assert s.get(f"{base}/Patient/{pid}").status_code == 200  # each connection open before the race
        start = threading.Barrier(RACERS)
        results: list[tuple[int, str]] = []

        def racer(index: int) -> None:
            start.wait()
            results.append(_conditional_create(sessions[index], (first, second)[index % 2], pid, index))

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        found = sessions[0].get(f"{second}/Observation", params={"identifier": f"{SYSTEM}|the-one"}).json()

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (RACERS - 1) + [201], "one create, every other racer told it exists"
    ids = {location.split("Observation/")[1].split("/")[0] for _, location in results}
    assert len(ids) == 1, ids
    assert found["total"] == 1 and found["entry"][0]["resource"]["id"] in ids
    held = _count(db_engine, resources, resources.c.res_type == "Observation")
    versions = _count(db_engine, resource_versions, resource_versions.c.res_type == "Observation")
    indexed = _count(db_engine, idx_token, idx_token.c.res_type == "Observation", idx_token.c.param == "identifier")
    assert (held, versions, indexed) == (1, 1, 1)
    engine = db_engine.dialect.name
    record(f"Twenty conditional creates of one identifier at once ({engine})",
           f"{RACERS} threads released by one barrier, through 2 gateway processes on one {engine} database "
           "(REST If-None-Exist and transaction ifNoneExist, alternately)",
           f"{RACERS} conditional creates: {statuses.count(201)} answered 201, {statuses.count(200)} answered 200",
           f"{held} Observation, {versions} version, {len(ids)} id in every answer", None, f"conditional-create-race-{engine}")


@pytest.fixture
def postgres_url():
    url = create_postgres_database("faults")
    db.engine_for(url)  # migrated once here, not by four processes at once
    yield url
    db.engine_for(url).dispose()
    drop_postgres_database(url)


def _observation(pid: str, gateway: int, n: int) -> dict:
    value = f"{pid}-g{gateway}-{n}"
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _lab(pid, value), "request": {"method": "PUT", "url": f"Observation?identifier={SYSTEM}|{value}"}}]}


def test_two_gateways_and_two_workers_on_postgresql_lose_and_double_nothing(redis_url, redis_client, fhir_isolated, tmp_path,
                                                                            postgres_url):
    env = {**FAST_ENV, "SYNC_UPSTREAM_URL": fhir_isolated.base_url, "SYNC_BATCH_SIZE": "7", "GATEWAY_DATABASE_URL": postgres_url}
    workers = [start_worker(redis_url, env, tmp_path / f"w{i}.log", f"w-concurrent-{i}") for i in range(2)]
    try:
        with live_gateway(redis_url, **env) as first, live_gateway(redis_url, **env) as second:
            sessions = [session(), session()]
            pids = [stored_patient_id(sessions[0].post(f"{first}/cases?store=true", data=json.dumps(load_case(name)),
                                                       headers={"Content-Type": "application/json"}).json())
                    for name in SEED_CASES]
            jobs, failures = [], []

            def writer(index: int, base: str) -> None:
                for n in range(WRITES_PER_GATEWAY):
                    for pid in pids:
                        answer = sessions[index].post(f"{base}/Bundle", data=json.dumps(_observation(pid, index, n)))
                        if answer.status_code != 200:
                            failures.append((answer.status_code, answer.text[:300]))
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

            states = wait_for(all_done, 180, 0.3, "the push jobs")
            assert set(states) == {"finished"}, states
            held_here = {t: sessions[0].get(f"{first}/{t}", params={"_count": 1, "_total": "accurate"}).json()["total"]
                         for t in ("Condition", "Procedure", "MedicationStatement", "Observation")}
    finally:
        for proc in workers:
            stop_worker(proc)
    engine = db.engine_for(postgres_url)
    written = 2 * WRITES_PER_GATEWAY * len(SEED_CASES)
    versions = _count(engine, resource_versions, resource_versions.c.res_type == "Observation")
    upstream = server_counts(fhir_isolated.server)
    expected_observations = sum(len(load_case(n).get("observations", [])) + len(load_case(n).get("outcomes", [])) for n in SEED_CASES) \
        + written
    assert held_here["Observation"] == expected_observations
    assert versions == expected_observations, "each Observation written once: one version each"
    for rtype, count in held_here.items():
        assert upstream[rtype] == count, (rtype, upstream[rtype], count)
    record("Two gateways and two workers at once on the same patients (postgresql)",
           f"{written} EHR writes through 2 gateway processes, {len(jobs)} push jobs on 2 workers, one PostgreSQL database",
           f"gateway store: {held_here['Observation']} Observation ({versions} versions), {held_here['Condition']} Condition",
           f"upstream: {upstream['Observation']} Observation, {upstream['Condition']} Condition", None, "two-gateways-two-workers")
