"""Failure cases end to end: real `python -m workers` processes, the real sekmet server (stopped and restarted,
or behind the fault-injecting proxy), real Redis. Slow-ish, marked `faults`, run by default."""
from __future__ import annotations

import time

import pytest
from rq.job import Job

from case_files import SEED_CASES
from fault_proxy import FaultProxy
from fhir_server_fixture import fhir_server_mod
from polling import wait_for
from sync_helpers import (BOTH, EXPECTED, enqueue, forget_push_watermark, job_view, kill_hard, run_jobs, server_counts, start_worker,
                          stop_worker, store_case)
from reliability import record


def _counts(counts: dict) -> str:
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))

pytestmark = pytest.mark.faults


@pytest.fixture
def workers(redis_url, tmp_path):
    started = []

    def start(env: dict[str, str], name: str):
        proc = start_worker(redis_url, env, tmp_path / f"{name}.log", name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_worker(proc)


@pytest.fixture
def own_server():
    """A sekmet server of this test only, so it can be stopped and restarted on the same port and data."""
    handle = fhir_server_mod.start()
    yield handle
    fhir_server_mod.stop(handle, remove_data=True)


def test_upstream_down_then_up_job_is_retried_and_completes(client, redis_client, own_server, sync_env, workers):
    from fhir_server_fixture import FhirTestServer

    env = sync_env(own_server.base_url)
    store_case(client, SEED_CASES[0])
    workers(env, "w-down-up")
    fhir_server_mod.stop(own_server, remove_data=False)
    job_id = enqueue(client, "/sync/push", {})
    # Between attempts the job reads "retrying", with the reason of the attempt that failed: never "failed".
    failed_once = wait_for(lambda: (v := job_view(client, job_id))["status"] == "retrying" and v, 20, what="a failed attempt")
    assert failed_once["retriesLeft"] < 6 and "UpstreamUnavailable" in failed_once["error"], failed_once
    restarted = fhir_server_mod.start(port=own_server.port, data_dir=own_server.data_dir)
    up_at = time.monotonic()
    own_server.process = restarted.process
    view = wait_for(lambda: (v := job_view(client, job_id))["status"] in ("finished", "failed") and v, 40, what="the job")
    assert view["status"] == "finished", view
    held = server_counts(FhirTestServer(base_url=own_server.base_url))
    assert held == EXPECTED[SEED_CASES[0]]
    record("Upstream FHIR server down during a push, then back", "sekmet stopped before the job, restarted on the same port and data",
           _counts(EXPECTED[SEED_CASES[0]]), _counts(held), time.monotonic() - up_at, "upstream-down-up")


def test_job_that_exhausts_retries_is_failed_with_a_reason_and_can_be_requeued(client, redis_client, fhir_isolated, sync_env):
    sync_env("http://127.0.0.1:9/fhir", SYNC_JOB_RETRIES="0")  # one immediate RQ retry, then failed
    store_case(client, SEED_CASES[0])
    job_id = enqueue(client, "/sync/push", {})
    run_jobs(redis_client)
    view = job_view(client, job_id)
    assert view["status"] == "failed" and view["retriesLeft"] == 0
    assert view["error"].startswith("workers.errors.UpstreamUnavailable: upstream 'default' POST (base): ConnectionError")
    assert job_id in [j for j in Job.fetch(job_id, connection=redis_client).failed_job_registry.get_job_ids()]
    sync_env(fhir_isolated.base_url)
    answer = client.post(f"/jobs/{job_id}/requeue")
    assert answer.status_code == 202 and answer.get_json()["status"] == "queued"
    run_jobs(redis_client)
    assert job_view(client, job_id)["status"] == "finished"
    assert server_counts(fhir_isolated.server) == EXPECTED[SEED_CASES[0]]


def test_429_with_retry_after_is_waited_out_inside_a_push(client, redis_client, fhir_isolated, sync_env):
    with FaultProxy(fhir_isolated.base_url) as proxy:
        sync_env(proxy.base_url, SYNC_HTTP_ATTEMPTS="4")
        store_case(client, SEED_CASES[1])
        proxy.fail_next(2, 429, {"Retry-After": "1"})
        job_id = enqueue(client, "/sync/push", {})
        run_jobs(redis_client)
        assert job_view(client, job_id)["status"] == "finished"
        (t1, *_), (t2, *_), (t3, _, _, ok) = proxy.log[:3]
        assert [entry[3] for entry in proxy.log[:2]] == [429, 429] and ok == 200
        assert t2 - t1 >= 0.95 and t3 - t2 >= 0.95  # the client waited as told
    held = server_counts(fhir_isolated.server)
    assert held == EXPECTED[SEED_CASES[1]]
    record("Upstream throttling", "proxy answers 429 with Retry-After: 1, twice", _counts(EXPECTED[SEED_CASES[1]]),
           _counts(held), t3 - t1, "upstream-429")


def test_worker_killed_mid_job_is_rerun_by_the_next_worker_and_the_upstream_ends_exact(
        client, redis_client, fhir_isolated, sync_env, workers):
    with FaultProxy(fhir_isolated.base_url) as proxy:
        env = sync_env(proxy.base_url, SYNC_BATCH_SIZE="3")
        for name in SEED_CASES:
            store_case(client, name)
        proxy.delay = 0.1  # slow enough to be killed in the middle
        first = workers(env, "w-killed")
        job_id = enqueue(client, "/sync/push", {})
        total = sum(BOTH.values())
        wait_for(lambda: 12 <= (job_view(client, job_id)["progress"]["done"] or 0), 60, 0.05, "progress")
        kill_hard(first)
        killed_at = time.monotonic()
        view = job_view(client, job_id)
        assert view["status"] == "started" and view["progress"]["done"] < total
        proxy.delay = 0
        workers(env, "w-restarted")
        done = wait_for(lambda: (v := job_view(client, job_id))["status"] in ("finished", "failed") and v, 60, what="re-run")
        assert done["status"] == "finished", done
        recovered = time.monotonic() - killed_at
        assert Job.fetch(job_id, connection=redis_client).meta["abandoned_runs"] == 1
        held = server_counts(fhir_isolated.server)
        assert held == BOTH
        # Exact: every upstream copy equals ours, so a fresh push of everything finds nothing to do.
        forget_push_watermark()
        check = enqueue(client, "/sync/push", {})
        result = wait_for(lambda: job_view(client, check).get("result"), 30, what="check push")
        assert result["unchanged"] == total and result["created"] == result["updated"] == 0
    record("Worker SIGKILLed mid-push, restarted", "SIGKILL of the worker and its children after 12 resources", _counts(BOTH),
           _counts(held) + "; re-push: all unchanged", recovered, "worker-killed")


def test_two_workers_share_the_queue_without_interleaving_a_patients_writes(
        client, redis_client, fhir_isolated, sync_env, workers):
    with FaultProxy(fhir_isolated.base_url) as proxy:
        env = sync_env(proxy.base_url, SYNC_BATCH_SIZE="5")
        pids = [store_case(client, name) for name in SEED_CASES]
        proxy.delay = 0.02
        workers(env, "w-one")
        workers(env, "w-two")
        bodies = [{"patient": f"Patient/{pids[0]}"}, {"patient": f"Patient/{pids[0]}"}, {"patient": f"Patient/{pids[1]}"}, {}]
        job_ids = [enqueue(client, "/sync/push", body) for body in bodies]
        views = [wait_for(lambda j=j: (v := job_view(client, j))["status"] in ("finished", "failed") and v, 90, what=j)
                 for j in job_ids]
        assert [v["status"] for v in views] == ["finished"] * 4
    held = server_counts(fhir_isolated.server)
    assert held == BOTH
    record("Two workers, overlapping jobs for the same patients", "two python -m workers on one queue, 4 jobs (2 for one patient)",
           _counts(BOTH), _counts(held), None, "two-workers")
    jobs = [Job.fetch(j, connection=redis_client) for j in job_ids]
    assert {job.worker_name for job in jobs} == {"w-one", "w-two"}
    windows = [(pid, start, end, job.id) for job in jobs for pid, start, end in job.meta["lock_windows"]]
    for pid, start, end, owner in windows:
        for other_pid, other_start, other_end, other_owner in windows:
            if pid == other_pid and owner != other_owner:
                assert end <= other_start or other_end <= start, "two jobs wrote the same patient at once"
    assert sum(v["result"]["created"] for v in views) == sum(BOTH.values())


def test_500s_timeouts_and_lost_answers_during_a_push_end_exact(client, redis_client, fhir_isolated, sync_env):
    """The dangerous case: the upstream applied a transaction but its answer was lost; the retry must not duplicate."""
    with FaultProxy(fhir_isolated.base_url) as proxy:
        sync_env(proxy.base_url, SYNC_HTTP_ATTEMPTS="6", SYNC_READ_TIMEOUT="1", SYNC_BATCH_SIZE="10")
        store_case(client, SEED_CASES[1])
        proxy.fail_next(2, 500)
        proxy.slow_next = [0, 0, 1.5]
        proxy.drop_after_forward = 2
        started = time.monotonic()
        job_id = enqueue(client, "/sync/push", {})
        run_jobs(redis_client)
        elapsed = time.monotonic() - started
        view = job_view(client, job_id)
        assert view["status"] == "finished", view
        statuses = [entry[3] for entry in proxy.log]
        assert statuses.count(500) == 2 and statuses.count(-1) == 2
    held = server_counts(fhir_isolated.server)
    assert held == EXPECTED[SEED_CASES[1]]
    record("Upstream 500s, a stalled answer and lost answers", "proxy: 2 x 500, one 1.5 s stall (read timeout 1 s), 2 answers cut after the server applied them",
           _counts(EXPECTED[SEED_CASES[1]]), _counts(held), elapsed, "upstream-flaky")


def test_upstream_killed_mid_push_and_restarted_ends_exact(client, redis_client, own_server, sync_env, workers):
    from fhir_server_fixture import FhirTestServer

    with FaultProxy(own_server.base_url) as proxy:
        env = sync_env(proxy.base_url, SYNC_BATCH_SIZE="3")
        for name in SEED_CASES:
            store_case(client, name)
        proxy.delay = 0.1  # long enough to kill the server between two batches
        workers(env, "w-upstream-killed")
        job_id = enqueue(client, "/sync/push", {})
        wait_for(lambda: 9 <= (job_view(client, job_id)["progress"]["done"] or 0), 60, 0.05, "progress")
        own_server.process.kill()  # SIGKILL: no orderly shutdown of the FHIR server
        own_server.process.wait()
        killed_at = time.monotonic()
        time.sleep(1.0)
        restarted = fhir_server_mod.start(port=own_server.port, data_dir=own_server.data_dir)
        own_server.process = restarted.process
        proxy.delay = 0
        view = wait_for(lambda: (v := job_view(client, job_id))["status"] in ("finished", "failed") and v, 90, what="the job")
        assert view["status"] == "finished", view
        recovered = time.monotonic() - killed_at
    held = server_counts(FhirTestServer(base_url=own_server.base_url))
    assert held == BOTH
    record("Upstream FHIR server killed mid-push, restarted", "SIGKILL of sekmet after 9 resources pushed, restart after 1 s",
           _counts(BOTH), _counts(held), recovered, "upstream-killed")
