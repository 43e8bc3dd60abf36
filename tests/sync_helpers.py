"""Shared pieces of the sync tests: upstream env (the `sync_env` fixture, registered in conftest's pytest_plugins),
storing seed cases, the resources each seed case makes, counting resources on the FHIR server, running jobs
in-process or in real `python -m workers` processes, killing them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rq import SimpleWorker
from rq.job import Job

from case_files import DATA, SEED_CASES, load_case
from workers.queues import queue

REPO = Path(__file__).resolve().parent.parent
CLINICAL_TYPES = ("Patient", "Condition", "Procedure", "Encounter", "MedicationStatement", "Observation", "Provenance")
# Fast settings for tests: short leases and backoffs; the defaults are for production.
FAST_ENV = {"SYNC_LEASE_SECONDS": "2", "SYNC_SWEEP_SECONDS": "1", "SYNC_HTTP_ATTEMPTS": "3",
            "SYNC_BACKOFF_SECONDS": "0.05", "SYNC_BACKOFF_CAP_SECONDS": "0.2", "SYNC_JOB_RETRIES": "1,1,1,2,2,3",
            "SYNC_LOCK_WAIT_SECONDS": "30", "SYNC_CONNECT_TIMEOUT": "1", "SYNC_READ_TIMEOUT": "20"}


def _golden_counts(case: str) -> dict[str, int]:
    """Resources per type of a seed case, read from its golden Bundle (so a mapping change cannot stale the counts)."""
    bundle = json.loads((DATA / case / "expected-bundle.json").read_text(encoding="utf-8"))
    counts = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    return {t: counts.get(t, 0) for t in CLINICAL_TYPES} | dict(counts)  # 0 for a type the case lacks (Encounter)


EXPECTED = {case: _golden_counts(case) for case in SEED_CASES}
PULLED = {c: sum(n for t, n in EXPECTED[c].items() if t != "Provenance") for c in EXPECTED}  # Provenance is not pulled
BOTH = {t: sum(EXPECTED[c].get(t, 0) for c in SEED_CASES) for t in CLINICAL_TYPES}  # case 1 has no Encounter


@pytest.fixture
def sync_env(monkeypatch):
    """Point the gateway (and in-process jobs) at an upstream: sync_env(base_url, **extra env)."""
    def configure(base_url: str, **extra: str) -> dict[str, str]:
        env = {**FAST_ENV, "SYNC_UPSTREAM_URL": base_url, **extra}
        monkeypatch.delenv("SYNC_UPSTREAMS", raising=False)
        monkeypatch.delenv("SYNC_UPSTREAM_TOKEN", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return env
    return configure


def store_case(client, name: str) -> str:
    """Store a seed case through the gateway; the local Patient id."""
    answer = client.post("/cases?store=true", data=json.dumps(load_case(name)), content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    location = next(e["response"]["location"] for e in answer.get_json()["entry"] if e["response"]["location"].startswith("Patient/"))
    return location.split("/")[1]


def server_counts(server, types=CLINICAL_TYPES) -> dict[str, int]:
    return {t: server.request("GET", f"{t}?_summary=count").body["total"] for t in types}


def enqueue(client, path: str, body: dict) -> str:
    answer = client.post(path, data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.headers["Content-Location"] == f"/jobs/{answer.get_json()['id']}"
    return answer.get_json()["id"]


def run_jobs(redis_client) -> None:
    """Run every queued job in this process (no fork: nothing to gain from one here)."""
    SimpleWorker([queue(redis_client)], connection=redis_client).work(burst=True)


def job_view(client, job_id: str) -> dict:
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == 200
    return answer.get_json()


def start_worker(redis_url: str, env: dict[str, str], log_path: Path, name: str) -> subprocess.Popen:
    """A real `python -m workers` process in its own session."""
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "workers", "--url", redis_url, "--name", name], cwd=REPO,
                                env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _descendants(pid: int) -> list[int]:
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found += [child, *_descendants(child)]
    return found


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and everything it forked (work horse, scheduler): a machine losing power."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        kill_hard(proc)


def fetch(redis_client, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis_client)


def forget_push_watermark(upstream: str = "default") -> None:
    """Make the next all-patients push look at every patient again (the watermark lives in the store of record)."""
    from sqlalchemy import delete

    from store import db
    from store.schema import sync_watermarks

    with db.engine_for(db.default_url()).begin() as conn:
        conn.execute(delete(sync_watermarks).where(sync_watermarks.c.upstream == upstream,
                                                   sync_watermarks.c.name == "push"))


def mapped_upstream_id(ref: str, upstream: str = "default") -> str | None:
    """The upstream's id for one of our resources ('Type/id'), from the sync id map."""
    from store import db
    from workers import sync_state

    return sync_state.upstream_id(db.engine_for(db.default_url()), upstream, ref)
