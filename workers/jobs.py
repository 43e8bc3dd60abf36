"""The RQ jobs (importable by dotted path): push and pull for one upstream, all patients or one.

Transient failures (upstream unreachable, 429/5xx after every attempt, a patient lock held too long) raise,
so RQ retries the job; permanent ones (4xx, invalid resources) and conflicts are reported in the result.
Everything a job writes is idempotent, so a retry or a re-run after a crash repeats nothing twice.
"""
from __future__ import annotations

import contextlib
import logging
import time

import redis

from rq import get_current_job
from rq.job import Job

from store import audit_log, counters, reads
from store.db import DatabaseUnavailable
from workers.database import store
from workers import defaults, pull as pull_module, push as push_module, sync_state
from workers.fhir_client import FhirClient
from workers.locks import JobLease
from workers.results import Progress, Summary
from workers.upstreams import resolve

log = logging.getLogger("workers.jobs")


def _current_job() -> Job:
    """The RQ job running this function: push and pull run only as jobs (their lease and accounting need one)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("sync jobs run inside an RQ worker (workers.queues.enqueue)")
    return job


def push(upstream_name: str, patient: str | None = None) -> dict:
    """Push one patient ('Patient/<id>') or every patient changed since the last all-patients push."""
    job = _current_job()
    client, fhir, summary, progress = job.connection, FhirClient(resolve(upstream_name)), Summary(), Progress()
    started_ms = int(time.time() * 1000)
    if patient:
        pids = [_pid(patient)]
    else:
        pids = reads.patients_changed_since(store(), sync_state.push_watermark(store(), upstream_name))
    progress.set_total(sum(reads.compartment_size(store(), pid) for pid in pids))
    log.info("job %s: push to %s, %d patient(s)", job.id, upstream_name, len(pids), extra=_context(job))
    batch = defaults.setting("SYNC_BATCH_SIZE")
    with _accounted(job, "push", upstream_name, pids, fhir, summary):
        with JobLease(client, job.id) as lease:
            for pid in pids:
                with lease.patient(pid):
                    push_module.push_patient(client, fhir, pid, summary, progress, batch, job.id)
                summary.patients += 1
            progress.note("lock_windows", lease.lock_windows)
    if not patient and not summary.errors:
        sync_state.save_push_watermark(store(), upstream_name, started_ms)
    return _finish(job.id, "push", summary, fhir)


def pull(upstream_name: str, patient: str | None = None) -> dict:
    """Pull what changed upstream since the watermark: for one patient ('Patient/<id>') or for all."""
    job = _current_job()
    client, fhir, summary, progress = job.connection, FhirClient(resolve(upstream_name)), Summary(), Progress()
    log.info("job %s: pull from %s", job.id, upstream_name, extra=_context(job))
    with _accounted(job, "pull", upstream_name, [_pid(patient)] if patient else [], fhir, summary):
        with JobLease(client, job.id) as lease:
            pull_module.pull(client, fhir, _pid(patient) if patient else None, summary, progress,
                             defaults.setting("SYNC_BATCH_SIZE"), defaults.setting("SYNC_PULL_OVERLAP_SECONDS"),
                             lease.patient, job.id)
            progress.note("lock_windows", lease.lock_windows)
    return _finish(job.id, "pull", summary, fhir)


@contextlib.contextmanager
def _accounted(job, kind: str, upstream_name: str, pids: list[str], fhir: FhirClient, summary: Summary):
    """Every run of a sync job, finished or failed, leaves an AuditEvent and its upstream error count."""
    ok = False
    try:
        yield
        ok = not summary.errors
    finally:
        client = job.connection
        try:
            if fhir.errors_seen:
                counters.add_upstream_errors(client, upstream_name, fhir.errors_seen)
            audit_log.append(store(), audit_log.sync_event(kind, upstream_name, pids, ok, job.id, (job.meta or {}).get("request_id")))
        except (redis.RedisError, DatabaseUnavailable):
            log.error("job %s: could not record its audit event", job.id)


def _context(job) -> dict:
    """Log fields that tie a job's lines to the HTTP request that queued it."""
    return {"job": job.id, "request_id": (job.meta or {}).get("request_id")}


def _pid(patient: str) -> str:
    return patient.split("/", 1)[1] if patient.startswith("Patient/") else patient


def _finish(job_id: str, kind: str, summary: Summary, fhir: FhirClient) -> dict:
    summary.requests = fhir.requests_made
    log.info("job %s: %s done: %d created, %d updated, %d unchanged, %d conflicts, %d errors, %d requests",
             job_id, kind, summary.created, summary.updated, summary.unchanged, len(summary.conflicts),
             len(summary.errors), summary.requests)
    return summary.as_dict()
