"""The /sync and /jobs endpoints: every bad input is a 4xx OperationOutcome; job status; in-process mode."""
from __future__ import annotations

import json

import fakeredis
import pytest

from case_files import SEED_CASES
from gateway_setup import api_keys_config, authorised_client
from sync_helpers import enqueue, job_view, run_jobs, server_counts, store_case


def post(client, path: str, body) -> object:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json")


def outcome(answer, status: int) -> str:
    assert answer.status_code == status, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return json.dumps(body)


@pytest.fixture
def configured(sync_env):
    sync_env("http://127.0.0.1:9/fhir")


@pytest.mark.parametrize("path", ["/sync/push", "/sync/pull"])
@pytest.mark.parametrize("body, status, text", [
    ("{not json", 400, "not JSON"),
    ([1, 2], 400, "JSON object"),
    ({"upstream": "nowhere"}, 400, "unknown upstream"),
    ({"upstream": 7}, 400, "must be a string"),
    ({"patient": "Observation/1"}, 400, "Patient/<id>"),
    ({"patient": "Patient/has space"}, 400, "Patient/<id>"),
    ({"extra": True}, 400, "unknown field"),
])
def test_bad_sync_requests(client, configured, path, body, status, text):
    assert text in outcome(post(client, path, body), status)


def test_push_of_unknown_patient_and_missing_configuration(client, sync_env, monkeypatch):
    sync_env("http://127.0.0.1:9/fhir")
    assert "not in the gateway store" in outcome(post(client, "/sync/push", {"patient": "Patient/nobody"}), 404)
    monkeypatch.delenv("SYNC_UPSTREAM_URL")
    assert "no upstream is configured" in outcome(post(client, "/sync/pull", {}), 400)
    monkeypatch.setenv("SYNC_UPSTREAMS", "[oops")
    assert "misconfigured" in outcome(post(client, "/sync/pull", {}), 503)


def test_unknown_jobs_and_conflicts(client, configured):
    assert "no job" in outcome(client.get("/jobs/does-not-exist"), 404)
    assert "no job" in outcome(client.get("/jobs/bad$id"), 404)
    assert "no job" in outcome(client.post("/jobs/does-not-exist/requeue"), 404)
    assert "no conflict" in outcome(post(client, "/sync/conflicts/0123456789abcdef/resolve", {"keep": "local"}), 404)
    assert "keep" in outcome(post(client, "/sync/conflicts/0123456789abcdef/resolve", {"keep": "both"}), 400)
    assert "status" in outcome(client.get("/sync/conflicts?status=maybe"), 400)
    assert client.get("/sync/conflicts").get_json() == {"total": 0, "conflicts": []}


def test_job_status_and_requeue_of_a_job_that_is_not_failed(client, configured):
    job_id = enqueue(client, "/sync/pull", {})
    view = job_view(client, job_id)
    assert view["status"] == "queued" and view["kind"] == "pull" and view["upstream"] == "default"
    assert view["progress"] == {"done": 0, "total": None} and view["retriesLeft"] == 6
    assert "only failed jobs" in outcome(client.post(f"/jobs/{job_id}/requeue"), 409)
    async_answer = client.post("/sync/pull", headers={"Prefer": "respond-async"})
    assert async_answer.status_code == 202 and async_answer.headers["Content-Location"].startswith("/jobs/")


def test_sync_needs_the_admin_scope(app, configured):
    anonymous = app.test_client()
    assert anonymous.post("/sync/pull").status_code == 401


def test_in_process_mode_runs_jobs_inline(fhir_isolated, sync_env, redis_url, redis_client):
    from service import create_app

    sync_env(fhir_isolated.base_url)
    app = create_app({"REDIS_URL": redis_url, "TESTING": True, "API_KEYS": api_keys_config(), "RATE_LIMIT": "100000/minute"})
    app.extensions["redis"], app.extensions["redis_mode"] = fakeredis.FakeRedis(), "in-process"
    client = authorised_client(app)
    store_case(client, SEED_CASES[0])
    answer = client.post("/sync/push")
    assert answer.status_code == 202 and answer.get_json()["status"] == "finished", job_view(client, answer.get_json()["id"])["error"]
    view = job_view(client, answer.get_json()["id"])
    assert view["result"]["created"] == 38 and view["progress"]["done"] == 38
    assert server_counts(fhir_isolated.server)["Observation"] == 18


def test_sync_jobs_leave_audit_events_and_count_upstream_errors(client, redis_client, sync_env):
    """Found missing in review: sync runs in workers, and those runs must be audited and counted too."""
    from store.audit_log import events as audit_events
    sync_env("http://127.0.0.1:9/fhir", SYNC_JOB_RETRIES="0", SYNC_HTTP_ATTEMPTS="2")
    pid = store_case(client, "case1-vipoma")
    enqueue(client, "/sync/push", {"patient": f"Patient/{pid}"})
    run_jobs(redis_client)
    events, _ = audit_events(client.application.extensions["store"], None, 1000, 0)
    exports = [e for e in events if e["type"]["code"] == "110106"]
    assert exports and exports[-1]["outcome"] == "4" and {"reference": f"Patient/{pid}"} in [x["what"] for x in exports[-1]["entity"]]
    assert int(redis_client.hget("metrics:upstream-errors", "default")) >= 2
    assert 'gateway_upstream_errors{upstream="default"}' in client.get("/metrics").get_data(as_text=True)
