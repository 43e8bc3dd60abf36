"""Pull by FHIR Bulk Data from real upstreams: a second gateway (its own Redis, store, data folder and worker: a
real `$export` server, loaded with the vendored Synthea slice), and the sekmet server, which offers `$export` too,
refuses the kick-off of a Group it does not hold, and fails an export it cannot write. Local jobs run in-process
on both engines, or in real worker processes for the crash case."""
from __future__ import annotations

import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import databases
import pytest
import requests
from fault_proxy import FaultProxy
from gateway_setup import TEST_API_KEY
from live_gateway import live_gateway
from polling import wait_for
from sync_helpers import (
    enqueue,
    fetch,
    job_view,
    kill_hard,
    run_jobs,
    start_worker,
    stop_worker,
)

from service.redis_conn import start_private_redis
from store import db
from store.references import rewrite_references
from workers import sync_state
from workers.bulk_pull import CHECKPOINT, offers_export
from workers.pull import PULL_TYPES

CORPUS = Path(__file__).parent / "data" / "bulk" / "synthea-4-patients"
# LOINC 29463-7 "Body weight" (mappings/terminology/loinc.csv cites its sources)
BODY_WEIGHT = {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]}


@dataclass
class Hospital:
    """The upstream gateway, spoken to with the test API key."""

    base_url: str
    session: requests.Session

    def get(self, path: str, **params: str) -> requests.Response:
        return self.session.get(f"{self.base_url}/{path.lstrip('/')}", params=params, timeout=30)

    def resources(self, rtype: str) -> list[dict]:
        found, url = [], f"{self.base_url}/{rtype}?_count=500"
        while url:
            page = self.session.get(url, timeout=30).json()
            found += [e["resource"] for e in page.get("entry", [])]
            url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
        return found

    def put(self, resource: dict) -> None:
        answer = self.session.put(f"{self.base_url}/{resource['resourceType']}/{resource['id']}", json=resource,
                                  headers={"Content-Type": "application/fhir+json"}, timeout=30)
        assert answer.status_code in (200, 201), answer.text


@pytest.fixture(scope="module")
def hospital(tmp_path_factory) -> Iterator[Hospital]:
    """A second gateway as the hospital's Bulk Data server: a private redis-server (its queue is not ours), its
    own SQLite store and data folder, and one worker for its import and export jobs."""
    redis_url = start_private_redis()
    assert redis_url, "needs a redis-server binary"
    folder = tmp_path_factory.mktemp("hospital")
    env = {"GATEWAY_DATA_DIR": str(folder), "GATEWAY_DATABASE_URL": f"sqlite:///{folder}/hospital.sqlite3"}
    databases.migrated_engine(env["GATEWAY_DATABASE_URL"]).dispose()  # before two processes race to migrate it
    worker = start_worker(redis_url, env, folder / "worker.log", "hospital-worker")
    try:
        with open(folder / "gateway.log", "wb") as output, live_gateway(redis_url, output, **env) as base:
            session = requests.Session()
            session.headers["X-API-Key"] = TEST_API_KEY
            hospital = Hospital(base, session)
            _load_corpus(hospital)
            yield hospital
    finally:
        stop_worker(worker)


def _load_corpus(hospital: Hospital) -> None:
    body = "".join(path.read_text(encoding="utf-8") for path in sorted(CORPUS.glob("*.ndjson")))
    answer = hospital.session.post(f"{hospital.base_url}/$import", data=body.encode(), timeout=60,
                                   headers={"Content-Type": "application/fhir+ndjson", "Prefer": "respond-async"})
    assert answer.status_code == 202, answer.text
    status = answer.headers["Content-Location"]
    done = wait_for(lambda: (a := hospital.session.get(status, timeout=10)).status_code == 200 and a, 120, 0.5, "import")
    assert done.json()["error"] == []


@pytest.fixture
def local(monkeypatch, store_client, database_url):
    """The gateway under test on each engine; in-process jobs write to the same database."""
    monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
    return store_client


@pytest.fixture
def from_hospital(hospital, sync_env) -> dict[str, str]:
    # No overlap window: the second run must ask for exactly what changed after the first export.
    return sync_env(hospital.base_url, SYNC_UPSTREAM_TOKEN=TEST_API_KEY, SYNC_BATCH_SIZE="25",
                    SYNC_PULL_OVERLAP_SECONDS="0")


def pull(client, redis_client) -> dict:
    job_id = enqueue(client, "/sync/pull", {})
    run_jobs(redis_client)
    view = job_view(client, job_id)
    assert view["status"] == "finished", view
    return view


def upstream_form(local_copy: dict, engine, base_url: str) -> dict:
    """Our copy as the upstream wrote it: references back to upstream ids, absolute upstream URLs (targets we do
    not pull) back to relative ones; no id and no server meta."""
    def back(ref: str) -> str:
        if ref.startswith(base_url + "/"):
            return ref[len(base_url) + 1:]
        if "/" in ref and not ref.startswith(("http", "urn:")):
            return f"{ref.split('/', 1)[0]}/{sync_state.upstream_id(engine, 'default', ref)}"
        return ref

    return sync_state.content(rewrite_references(local_copy, back))


def held(engine) -> Counter:
    from sqlalchemy import func, select

    from store.schema import resources

    with engine.connect() as conn:
        rows = conn.execute(select(resources.c.res_type, func.count()).where(resources.c.deleted.is_(False))
                            .group_by(resources.c.res_type))
        return Counter({t: n for t, n in rows})


def test_initial_pull_by_export_holds_every_upstream_resource_of_the_pulled_types(
        local, redis_client, hospital, from_hospital, database_url):
    view = pull(local, redis_client)
    assert view["pull"]["mode"] == "bulk-export" and view["pull"]["since"] is None, view["pull"]
    upstream = {t: hospital.resources(t) for t in PULL_TYPES}
    total = sum(len(items) for items in upstream.values())
    result = view["result"]
    assert (result["created"], result["errors"], result["conflicts"]) == (total, [], []), result
    assert view["progress"] == {"done": total, "total": total}
    engine = db.engine_for(database_url)
    assert held(engine) == Counter({t: len(items) for t, items in upstream.items() if items})
    for rtype, items in upstream.items():
        mapped = sync_state.local_ids(engine, "default", [f"{rtype}/{r['id']}" for r in items])
        for r in items:
            ours = local.get(f"/{rtype}/{mapped[rtype + '/' + r['id']]}").get_json()
            assert upstream_form(ours, engine, hospital.base_url) == sync_state.content(r), (rtype, r["id"])
    # Every Condition's subject is the local Patient, not a link back to the hospital.
    patients = {e["resource"]["id"] for e in local.get("/Patient?_count=100").get_json()["entry"]}
    conditions = local.get("/Condition?_count=500").get_json()["entry"]
    assert {c["resource"]["subject"]["reference"].split("/", 1)[1] for c in conditions} <= patients
    # The export job was deleted on the hospital's server at the end.
    assert hospital.session.get(view["pull"]["statusUrl"], timeout=10).status_code == 404


def test_a_second_pull_exports_since_the_first_and_moves_only_what_changed(
        local, redis_client, hospital, from_hospital, database_url):
    first = pull(local, redis_client)
    assert first["pull"]["mode"] == "bulk-export"
    condition = hospital.resources("Condition")[0]
    condition["note"] = [{"text": f"re-read by the hospital ({uuid.uuid4().hex[:8]})"}]
    hospital.put(condition)
    pid = hospital.resources("Patient")[0]["id"]
    added = {"resourceType": "Observation", "id": f"weight-{uuid.uuid4().hex[:12]}", "status": "final", "code": BODY_WEIGHT,
             "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2024-05-02",
             "valueQuantity": {"value": 71.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    hospital.put(added)

    second = pull(local, redis_client)
    assert second["pull"]["mode"] == "bulk-export" and second["pull"]["since"], second["pull"]
    result = second["result"]
    assert (result["created"], result["updated"], result["duplicates"], result["errors"]) == (1, 1, 0, []), result
    assert second["progress"] == {"done": 2, "total": 2}  # the export held only the two changed resources
    engine = db.engine_for(database_url)
    lid = sync_state.local_ids(engine, "default", [f"Condition/{condition['id']}"])[f"Condition/{condition['id']}"]
    assert local.get(f"/Condition/{lid}").get_json()["note"] == condition["note"]
    weight = sync_state.local_ids(engine, "default", [f"Observation/{added['id']}"])[f"Observation/{added['id']}"]
    local_pid = sync_state.local_ids(engine, "default", [f"Patient/{pid}"])[f"Patient/{pid}"]
    assert local.get(f"/Observation/{weight}").get_json()["subject"]["reference"] == f"Patient/{local_pid}"


def test_export_is_detected_from_the_capability_statement(hospital, fhir_isolated):
    ours = hospital.get("metadata").json()
    sekmet = fhir_isolated.request("GET", "metadata").body
    assert offers_export(ours) and offers_export(sekmet)
    for statement in (ours, sekmet):
        statement.pop("instantiates", None)
        for rest in statement["rest"]:
            rest.pop("operation", None)
            for resource in rest["resource"]:
                resource["operation"] = [op for op in resource.get("operation", []) if "export" not in op["name"]]
        assert not offers_export(statement)


def _post_patient_with_weights(server, count: int = 3) -> int:
    """One Patient and `count` body weights on a sekmet server, in one transaction; the number of resources."""
    entries = [{"fullUrl": "urn:uuid:7d3c1c8e-5b1a-4f55-9d6e-0a4a0c2f6b11",
                "resource": {"resourceType": "Patient", "gender": "female", "birthDate": "1958-03-09"},
                "request": {"method": "POST", "url": "Patient"}}]
    entries += [{"resource": {"resourceType": "Observation", "status": "final", "code": BODY_WEIGHT,
                              "subject": {"reference": "urn:uuid:7d3c1c8e-5b1a-4f55-9d6e-0a4a0c2f6b11"},
                              "effectiveDateTime": f"2024-0{1 + i}-15",
                              "valueQuantity": {"value": 60 + i, "unit": "kg", "system": "http://unitsofmeasure.org",
                                                "code": "kg"}},
                 "request": {"method": "POST", "url": "Observation"}} for i in range(count)]
    answer = server.request("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert answer.status == 200, answer.body
    return len(entries)


def test_sekmet_offers_export_and_is_pulled_by_it(local, redis_client, fhir_isolated, sync_env):
    total = _post_patient_with_weights(fhir_isolated)
    sync_env(fhir_isolated.base_url)
    view = pull(local, redis_client)
    assert view["pull"]["mode"] == "bulk-export", view["pull"]
    assert (view["result"]["created"], view["result"]["errors"]) == (total, [])


def test_an_upstream_that_refuses_the_kick_off_is_pulled_by_paged_search(local, redis_client, fhir_isolated, sync_env):
    total = _post_patient_with_weights(fhir_isolated)
    sync_env(fhir_isolated.base_url, SYNC_UPSTREAM_EXPORT="group:not-held-there")  # sekmet answers 404
    view = pull(local, redis_client)
    assert view["pull"] == {"mode": "search", "fallback": "the upstream refused the $export kick-off (HTTP 404)"}
    assert (view["result"]["created"], view["result"]["errors"]) == (total, [])


def test_export_off_in_the_configuration_pages_without_asking(local, redis_client, fhir_isolated, sync_env):
    total = _post_patient_with_weights(fhir_isolated, 1)
    with FaultProxy(fhir_isolated.base_url) as proxy:
        sync_env(proxy.base_url, SYNC_UPSTREAM_EXPORT="off")
        view = pull(local, redis_client)
        assert proxy.count(contains="metadata") == 0 and proxy.count(contains="$export") == 0
    assert view["pull"]["mode"] == "search" and view["result"]["created"] == total


def test_an_export_that_fails_upstream_is_reported_on_the_job_and_the_pull_pages_instead(
        local, redis_client, fhir_server_factory, sync_env):
    server = fhir_server_factory()
    total = _post_patient_with_weights(server)
    bulk_folder = server.handle.data_dir / "data" / "bulk"
    shutil.rmtree(bulk_folder, ignore_errors=True)
    bulk_folder.write_text("a file where sekmet writes its export folders: every export fails")
    sync_env(server.base_url)
    view = pull(local, redis_client)
    assert view["pull"] == {"mode": "search", "fallback": "the upstream's bulk export failed"}
    (error,) = view["result"]["errors"]
    assert error["reason"].startswith("the upstream's bulk export failed (") and "HTTP 500" in error["reason"]
    assert "exception" in error["reason"]  # the OperationOutcome's issue code, never its diagnostics
    assert view["result"]["created"] == total


@pytest.mark.faults
def test_a_worker_killed_mid_pull_is_resumed_from_its_export_without_duplicates(
        local, redis_client, redis_url, hospital, sync_env, database_url, tmp_path):
    with FaultProxy(hospital.base_url) as proxy:
        env = sync_env(proxy.base_url, SYNC_UPSTREAM_TOKEN=TEST_API_KEY, SYNC_BATCH_SIZE="25",
                       GATEWAY_DATABASE_URL=database_url)
        proxy.delay = 0.4  # every upstream call is slow: the kill lands while the export is polled or fetched
        first = start_worker(redis_url, env, tmp_path / "w1.log", "bulk-pull-killed")
        second = None
        try:
            job_id = enqueue(local, "/sync/pull", {})
            wait_for(lambda: (fetch(redis_client, job_id).meta or {}).get(CHECKPOINT), 60, 0.05, "the export checkpoint")
            kill_hard(first)
            assert job_view(local, job_id)["status"] == "started"
            proxy.delay = 0
            second = start_worker(redis_url, env, tmp_path / "w2.log", "bulk-pull-resumed")
            done = wait_for(lambda: (v := job_view(local, job_id))["status"] in ("finished", "failed") and v, 90,
                            what="the resumed pull")
        finally:
            stop_worker(first)
            if second is not None:
                stop_worker(second)
    assert done["status"] == "finished", done
    assert proxy.count("GET", "Patient/$export") == 1  # resumed from the checkpoint: no second export
    upstream = Counter({t: len(hospital.resources(t)) for t in PULL_TYPES})
    assert held(db.engine_for(database_url)) == +upstream  # every resource once: no duplicates
    assert done["result"]["errors"] == [] and done["pull"]["mode"] == "bulk-export"
