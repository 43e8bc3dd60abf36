"""The RQ job that computes a patient's treatment-line summary after a write and caches it (summaries.line_summary
holds the computation and the cache; the gateway reads through the same module on a request)."""
from __future__ import annotations

import json
import logging

import redis

from store import db
from summaries.line_summary import SummaryTooLarge, cached_summary

log = logging.getLogger("workers.summaries")


def compute_treatment_lines(pid: str) -> dict:
    """RQ job: build and cache the summary for the patient's current version (a no-op when cached)."""
    from rq import get_current_job

    job = get_current_job()
    client = job.connection if job else redis.Redis()
    engine = db.engine_for(db.default_url())
    try:
        body, _, hit = cached_summary(engine, client, pid)
    except SummaryTooLarge as exc:
        log.warning("treatment lines not computed", extra={"job": job.id if job else None, "resources": exc.size})
        return {"patient": pid, "cached": False, "lines": None, "error": "too-large"}
    lines = len(json.loads(body)["lines"])
    log.info("treatment lines computed", extra={"job": job.id if job else None, "request_id": (job.meta or {}).get("request_id") if job else None,
                                                 "lines": lines, "cached": hit})
    return {"patient": pid, "cached": hit, "lines": lines}
