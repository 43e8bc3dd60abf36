"""The cheap cached read (bench/gateway.py, benchmark 2) keeps every guarantee: read events are queued in the
process but reach the audit table on a short timer and when the process stops (python -m service and gunicorn),
in order with the process's write events; the rate limit is counted in the cache lookup's pipeline and still
refuses with 429 on every way a cached read can end; the version lookup sees every committed write."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from case_files import load_case
from gateway_setup import TEST_API_KEY, api_keys_config, authorised_client, gateway_config
from live_gateway import live_gateway
from mappings.case_bundle import case_to_bundle
from net import free_port
from store import audit_log, reads
from store.schema import audit_event_patients, audit_events

REPO = Path(__file__).resolve().parent.parent


def _store_case(client) -> str:
    response = client.post("/Bundle", data=json.dumps(case_to_bundle(load_case("case1-vipoma"))),
                           content_type="application/fhir+json")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["entry"][0]["fullUrl"].split("/")[1]


def _rows_naming(engine, pid: str) -> list[dict]:
    """The audit rows naming pid, read from the table itself (audit_log.events would flush this process's queue)."""
    with engine.connect() as conn:
        bodies = conn.execute(select(audit_events.c.body).join(
            audit_event_patients, audit_event_patients.c.event_seq == audit_events.c.seq).where(
            audit_event_patients.c.patient_id == pid).order_by(audit_events.c.seq)).scalars().all()
    return [json.loads(b) for b in bodies]


def _described(event: dict) -> str:
    return next(e["description"] for e in event["entity"] if "description" in e)


def test_a_read_event_reaches_the_table_on_the_flush_timer_without_anyone_listing(store_client, db_engine):
    pid = _store_case(store_client)
    assert store_client.get(f"/Patient/{pid}/$everything").status_code == 200
    deadline = time.monotonic() + 5
    while not any(_described(e).startswith("GET /Patient/<pid>/$everything") for e in _rows_naming(db_engine, pid)):
        assert time.monotonic() < deadline, "the read's audit event never reached the table"
        time.sleep(0.02)


def test_a_write_event_is_written_after_the_read_events_queued_before_it(store_client, db_engine):
    pid = _store_case(store_client)
    store_client.get(f"/Patient/{pid}/$everything")
    store_client.get(f"/Patient/{pid}")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "lab"}, "subject": {"reference": f"Patient/{pid}"}},
        "request": {"method": "POST", "url": "Observation"}}]}
    assert store_client.post("/Bundle", data=json.dumps(bundle), content_type="application/fhir+json").status_code == 200
    order = [_described(e).split()[0] for e in _rows_naming(db_engine, pid)]
    assert order[-3:] == ["GET", "GET", "POST"]  # no listing in between: the write's transaction carried the reads


def test_listing_the_trail_shows_the_read_just_answered(store_client, db_engine):
    pid = _store_case(store_client)
    store_client.get(f"/Patient/{pid}/$everything")
    events, _ = audit_log.events(db_engine, pid, 10, 0)
    assert _described(events[0]) == "GET /Patient/<pid>/$everything"


def _count_rows(engine, pid: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(audit_event_patients).where(
            audit_event_patients.c.patient_id == pid)).scalar_one()


def _patient_via(base: str) -> str:
    response = requests.post(f"{base}/Bundle", data=json.dumps(case_to_bundle(load_case("case1-vipoma"))),
                             headers={"X-API-Key": TEST_API_KEY, "Content-Type": "application/fhir+json"}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    return response.json()["entry"][0]["fullUrl"].split("/")[1]


def test_python_m_service_writes_its_queued_read_events_when_it_stops(redis_url, redis_client, db_engine, database_url):
    # A flush interval of an hour: only the exit can write the read events.
    with live_gateway(redis_url, database_url=database_url, GATEWAY_AUDIT_FLUSH_SECONDS="3600") as base:
        pid = _patient_via(base)
        for _ in range(3):
            assert requests.get(f"{base}/Patient/{pid}/$everything", headers={"X-API-Key": TEST_API_KEY}, timeout=30).status_code == 200
        time.sleep(0.3)
        before = _count_rows(db_engine, pid)  # the write's event (and the reads it carried)
    assert _count_rows(db_engine, pid) == before + 3  # SIGTERM: the process wrote the three queued reads on its way out


def _wait_up(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or a worker still booting on a loaded machine
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn at {base} did not become healthy")


def test_a_gunicorn_worker_writes_its_queued_read_events_when_it_stops(redis_url, redis_client, db_engine, database_url):
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_DATABASE_URL": database_url, "GATEWAY_API_KEYS": api_keys_config(),
           "GATEWAY_RATE_LIMIT": "100000/minute", "GATEWAY_AUDIT_FLUSH_SECONDS": "3600"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "2",
                             "-b", f"127.0.0.1:{port}", "service.wsgi:app"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base)
        pid = _patient_via(base)
        for _ in range(6):  # one connection each: both workers may hold some of them
            assert requests.get(f"{base}/Patient/{pid}/$everything", headers={"X-API-Key": TEST_API_KEY}, timeout=30).status_code == 200
        time.sleep(0.3)
        before = _count_rows(db_engine, pid)
        assert before == 1  # the write's event only: the six reads are still queued in the workers
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: gunicorn stops its workers, which exit through atexit
        proc.wait(timeout=30)
    assert _count_rows(db_engine, pid) == 7  # the write and all six reads


RATE_WINDOW_SECONDS = 60  # "4/minute": one fixed window per clock minute (service/rate_limit.py)
ROOM_SECONDS = 15  # far more than one of these tests takes, even on a loaded machine


def _fresh_enough_window() -> int:
    """The rate window a test's requests will all be counted in. A fixed window starts its count afresh when it rolls
    over, so a test counting up to the limit across a rollover would see its fifth request allowed: when the current
    window ends in less than ROOM_SECONDS, wait for the next one."""
    left = RATE_WINDOW_SECONDS - time.time() % RATE_WINDOW_SECONDS
    if left < ROOM_SECONDS:
        time.sleep(left + 0.05)
    return int(time.time() // RATE_WINDOW_SECONDS)


def _counted_in(redis_client, window: int) -> int:
    """How many requests of the test client the rate limit counted in that window (its counter in Redis)."""
    return int(redis_client.get(f"ratelimit:{{client:test-suite}}:{window}") or 0)


@pytest.fixture
def limited(redis_url, redis_client, db_engine, database_url):
    from service import create_app

    app = create_app(gateway_config(redis_url, database_url, RATE_LIMIT="4/minute"))
    return authorised_client(app)


def test_the_rate_limit_counted_in_the_cache_lookup_refuses_the_request_over_the_limit(limited, redis_client):
    window = _fresh_enough_window()
    pid = _store_case(limited)  # 1
    statuses = [limited.get(f"/Patient/{pid}/$everything") for _ in range(4)]  # 2, 3, 4 and 5: the fifth is over
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[1].headers["X-Cache"] == "hit"
    refused = statuses[3]
    assert refused.get_json()["resourceType"] == "OperationOutcome" and int(refused.headers["Retry-After"]) >= 1
    assert b"entry" not in refused.data  # the bundle is never served over the limit
    assert _counted_in(redis_client, window) == 5  # all five in the window the test waited for


@pytest.mark.parametrize("ending", ["not-found", "not-modified", "bad-parameter"])
def test_every_way_a_cached_read_ends_is_counted(limited, redis_client, ending):
    window = _fresh_enough_window()
    pid = _store_case(limited)  # 1
    etag = limited.get(f"/Patient/{pid}/$everything").headers["ETag"]  # 2
    ask = {"not-found": ("/Patient/nobody/$everything", {}), "not-modified": (f"/Patient/{pid}/$everything", {"If-None-Match": etag}),
           "bad-parameter": (f"/Patient/{pid}/$everything?_count=-1", {})}[ending]
    first, second = (limited.get(ask[0], headers=ask[1]) for _ in range(2))  # 3 and 4
    assert first.status_code == second.status_code == {"not-found": 404, "not-modified": 304, "bad-parameter": 400}[ending]
    assert _counted_in(redis_client, window) == 4  # each way of ending was counted, in the one window
    assert limited.get(ask[0], headers=ask[1]).status_code == 429  # 5
    assert _counted_in(redis_client, window) == 5


def test_the_version_lookup_sees_a_write_committed_by_another_connection(db_engine, store_client):
    pid = _store_case(store_client)
    exists, version = reads.patient_exists(db_engine, pid)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "lab"}, "subject": {"reference": f"Patient/{pid}"}},
        "request": {"method": "POST", "url": "Observation"}}]}
    store_client.post("/Bundle", data=json.dumps(bundle), content_type="application/fhir+json")
    assert exists and reads.patient_exists(db_engine, pid) == (True, version + 1)
    assert reads.patient_exists(db_engine, "nobody") == (False, 0)
    lone = store_client.post("/Patient", data=json.dumps({"resourceType": "Patient"}), content_type="application/fhir+json")
    lone_id = lone.headers["Location"].split("/Patient/")[1].split("/")[0]
    assert reads.patient_exists(db_engine, lone_id)[0] is True
    assert store_client.delete(f"/Patient/{lone_id}").status_code in (200, 204)
    assert reads.patient_exists(db_engine, lone_id)[0] is False
