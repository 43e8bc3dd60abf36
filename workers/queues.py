"""The queues (sync; treatment-line summaries) and how jobs are put on them (retries, timeouts, lifetimes)."""
from __future__ import annotations

import traceback
from typing import Any, Callable

import redis
from rq import Queue, Retry
from rq.job import Job

from workers import defaults

QUEUE_NAME = defaults.SYNC_QUEUE
SUMMARIES_QUEUE = "summaries"
RESULT_TTL = 7 * 24 * 3600    # finished jobs (and their summaries) stay readable at /jobs/<id> for a week
FAILURE_TTL = 30 * 24 * 3600  # failed jobs stay requeueable for a month


def queue(client: redis.Redis, is_async: bool = True) -> Queue:
    """The sync queue on `client`; is_async=False runs jobs inline (the gateway's in-process mode)."""
    return Queue(QUEUE_NAME, connection=client, is_async=is_async)


def enqueue(client: redis.Redis, func: Callable, *args, is_async: bool = True, description: str = "",
            request_id: str | None = None) -> Job:
    """Enqueue func(*args) with RQ retries for transient failures (SYNC_JOB_RETRIES intervals); the request id
    of the HTTP request that asked for it travels in job.meta, into the worker's log lines."""
    intervals = defaults.retry_intervals()
    retry = Retry(max=len(intervals), interval=intervals) if intervals else None
    return queue(client, is_async).enqueue(func, *args, retry=retry, description=description,
                                           job_timeout=defaults.setting("SYNC_JOB_TIMEOUT"),
                                           result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                                           meta={"request_id": request_id} if request_id else None)


def note_failed_attempt(job: Job, exc_type: type[BaseException], exc_value: BaseException, tb: object) -> bool:
    """RQ exception handler: keep the reason of every failed attempt in job.meta["lastError"].

    RQ stores a failure Result only once no retry is left; while a job waits for its next attempt (status
    scheduled, retries left) nothing else says why the last one failed. Returns True: later handlers run too.
    """
    lines = [line for line in "".join(traceback.format_exception_only(exc_type, exc_value)).splitlines() if line.strip()]
    job.meta["lastError"] = lines[-1] if lines else exc_type.__name__
    job.save_meta()
    return True


def summaries_queue(client: redis.Redis, is_async: bool = True) -> Queue:
    return Queue(SUMMARIES_QUEUE, connection=client, is_async=is_async)


def enqueue_summaries(client: redis.Redis, pids: set[str], is_async: bool = True, request_id: str | None = None) -> None:
    """Queue the recomputation of each patient's treatment lines (after a write or a sync)."""
    from workers.summaries import compute_treatment_lines

    target = summaries_queue(client, is_async)
    options: dict[str, Any] = {"result_ttl": 3600, "failure_ttl": 86400, "retry": Retry(max=3, interval=[1, 5, 30]),
               "meta": {"request_id": request_id} if request_id else None}
    if not is_async:  # inline (in-process mode): each job runs as it is enqueued, which enqueue_many would defer
        for pid in sorted(pids):
            target.enqueue(compute_treatment_lines, pid, **options)
        return
    # The same jobs in one MULTI/EXEC round trip, where each enqueue took two.
    target.enqueue_many([Queue.prepare_data(compute_treatment_lines, (pid,), **options) for pid in sorted(pids)])
