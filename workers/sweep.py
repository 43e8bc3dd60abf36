"""Abandoned jobs: a worker killed mid-job (SIGKILL, lost machine) leaves its job 'started' for good.

RQ 3 notices only when the execution's heartbeat entry expires (about 90 s) and then retries the job
only if it has RQ retries left, otherwise fails it. We detect it sooner and always re-run it: a started job
whose lease (workers/locks.py) has expired belongs to a dead worker. Each worker sweeps when it starts and
every SYNC_SWEEP_SECONDS; removing the registry entry is the claim, so two sweeping workers re-run a job once.
"""
from __future__ import annotations

import logging
import time

import redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from workers import defaults, sync_keys
from workers.queues import queue

log = logging.getLogger("workers.sweep")
MAX_ABANDONED_RUNS = 3  # a job that kills its worker every time must end up failed, not loop forever


def requeue_abandoned(client: redis.Redis, grace_seconds: float | None = None) -> list[str]:
    """Re-enqueue every started job whose lease is gone; the ids of the jobs requeued (or failed)."""
    grace = defaults.setting("SYNC_LEASE_SECONDS") if grace_seconds is None else grace_seconds
    sync_queue = queue(client)
    registry = StartedJobRegistry(queue=sync_queue)
    handled = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = Job.fetch(job_id, connection=client) if client.exists(f"rq:job:{job_id}") else None
        if job is None or job.get_status() != JobStatus.STARTED or client.exists(sync_keys.lease(job_id)):
            continue
        if job.started_at and time.time() - job.started_at.timestamp() < grace:
            continue  # the job may not have taken its lease yet
        if not client.zrem(registry.key, f"{job_id}:{execution_id}"):
            continue  # another worker's sweep claimed it first
        _rerun(sync_queue, job)
        handled.append(job_id)
    return handled


def _rerun(sync_queue, job: Job) -> None:
    runs = int(job.meta.get("abandoned_runs", 0)) + 1
    job.meta["abandoned_runs"] = runs
    job.save_meta()
    if runs > MAX_ABANDONED_RUNS:
        reason = f"AbandonedJob: the worker died during each of {runs} runs; giving up"
        job.set_status(JobStatus.FAILED)
        FailedJobRegistry(queue=sync_queue).add(job, exc_string=reason)
        log.warning("job %s: abandoned %d times, moved to failed", job.id, runs)
        return
    log.warning("job %s: abandoned by a dead worker (run %d); re-enqueued", job.id, runs)
    sync_queue.enqueue_job(job, at_front=True)
