"""The sync queue and how jobs are put on it (retry policy, timeouts, result lifetimes)."""
from __future__ import annotations

from typing import Callable

import redis
from rq import Queue, Retry
from rq.job import Job

from workers import defaults

QUEUE_NAME = defaults.SYNC_QUEUE
RESULT_TTL = 7 * 24 * 3600    # finished jobs (and their summaries) stay readable at /jobs/<id> for a week
FAILURE_TTL = 30 * 24 * 3600  # failed jobs stay requeueable for a month


def queue(client: redis.Redis, is_async: bool = True) -> Queue:
    """The sync queue on `client`; is_async=False runs jobs inline (the gateway's in-process mode)."""
    return Queue(QUEUE_NAME, connection=client, is_async=is_async)


def enqueue(client: redis.Redis, func: Callable, *args, is_async: bool = True, description: str = "") -> Job:
    """Enqueue func(*args) with RQ retries for transient failures (SYNC_JOB_RETRIES intervals)."""
    intervals = defaults.retry_intervals()
    retry = Retry(max=len(intervals), interval=intervals) if intervals else None
    return queue(client, is_async).enqueue(func, *args, retry=retry, description=description,
                                           job_timeout=defaults.setting("SYNC_JOB_TIMEOUT"),
                                           result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL)
