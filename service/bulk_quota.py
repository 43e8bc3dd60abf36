"""What one client may ask of the bulk endpoints at a time: a bounded number of unfinished `$import`/`$export`
jobs (each can spool 1 GiB to disk or read the whole store), and a bounded number of URLs per import manifest.

GATEWAY_BULK_MAX_JOBS_PER_CLIENT (4): a kick-off while that many of the client's bulk jobs are queued or running
gets 429 with Retry-After, before any upload is spooled. GATEWAY_BULK_MAX_IMPORT_URLS (1000): a manifest naming
more URLs gets 400 `too-costly`. The client's unfinished jobs are a Redis set per client, pruned at each kick-off
by the jobs' own status (a job that finished, failed, was cancelled or expired no longer counts).
"""
from __future__ import annotations

import os

from flask import Response, current_app
from rq.job import Job, JobStatus

from service.outcome import error

ACTIVE = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
KEY_TTL = 7 * 24 * 3600  # longer than any bulk job runs (BULK_JOB_TIMEOUT is a day)


def max_jobs() -> int:
    return int(current_app.config.get("BULK_MAX_JOBS_PER_CLIENT") or os.environ.get("GATEWAY_BULK_MAX_JOBS_PER_CLIENT") or 4)


def max_import_urls() -> int:
    return int(current_app.config.get("BULK_MAX_IMPORT_URLS") or os.environ.get("GATEWAY_BULK_MAX_IMPORT_URLS") or 1000)


def _key(owner: str) -> str:
    return f"bulk:active:{{{owner}}}"


def _active(owner: str) -> list[str]:
    redis = current_app.extensions["redis"]
    ids = [i.decode() if isinstance(i, bytes) else i for i in redis.smembers(_key(owner))]
    jobs = Job.fetch_many(ids, connection=redis) if ids else []
    done = [job_id for job_id, job in zip(ids, jobs) if job is None or job.get_status(refresh=False) not in ACTIVE]
    if done:
        redis.srem(_key(owner), *done)
    return [job_id for job_id in ids if job_id not in done]


def refuse_when_busy(owner: str) -> Response | None:
    """429 when the client already has the most unfinished bulk jobs it may have; else None."""
    active = _active(owner)
    if len(active) < max_jobs():
        return None
    response = error(429, f"{len(active)} bulk jobs of this client are still queued or running (at most {max_jobs()}); "
                     "wait for one to finish, or cancel an export (DELETE its status URL)", "throttled")
    response.headers["Retry-After"] = "30"
    return response


def track(owner: str, job_id: str) -> None:
    redis = current_app.extensions["redis"]
    redis.sadd(_key(owner), job_id)
    redis.expire(_key(owner), KEY_TTL)


def refuse_long_manifest(count: int) -> Response | None:
    if count <= max_import_urls():
        return None
    return error(400, f"the manifest names {count} URLs; at most {max_import_urls()} per import", "too-costly", "input")
