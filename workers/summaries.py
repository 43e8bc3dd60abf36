"""Treatment-line summaries as cached patient views: computed by an RQ job after every write, or on demand."""
from __future__ import annotations

import json
import logging

import redis

from store import patient_cache, reads
from treatment_lines.engine import summarise
from treatment_lines.rules import load_rules

log = logging.getLogger("workers.summaries")



def variant() -> str:
    """The cache variant: the rule pack's version is part of it, so a new pack never serves old lines."""
    return patient_cache.variant_key("treatment-lines", load_rules()["version"])


def summary_bytes(client: redis.Redis, pid: str) -> bytes:
    return json.dumps(summarise(reads.compartment(client, pid)), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def cached_summary(client: redis.Redis, pid: str) -> tuple[bytes, str, bool]:
    """(summary JSON, etag, hit) for the patient's current version."""
    return patient_cache.cached_view(client, pid, variant(), lambda: summary_bytes(client, pid))


def compute_treatment_lines(pid: str) -> dict:
    """RQ job: build and cache the summary for the patient's current version (a no-op when cached)."""
    from rq import get_current_job

    job = get_current_job()
    client = job.connection if job else redis.Redis()
    body, _, hit = cached_summary(client, pid)
    lines = len(json.loads(body)["lines"])
    log.info("treatment lines computed", extra={"job": job.id if job else None, "request_id": (job.meta or {}).get("request_id") if job else None,
                                                 "lines": lines, "cached": hit})
    return {"patient": pid, "cached": hit, "lines": lines}
