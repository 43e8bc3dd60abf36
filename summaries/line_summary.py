"""Treatment-line summaries as cached patient views: computed by an RQ job after every write
(workers.summaries.compute_treatment_lines), or on demand by the gateway.

On demand, one process at a time computes a patient's summary (a Redis single-flight lock); the others wait
for its result for a bounded time and otherwise get SummaryBusy (the gateway answers 503 with Retry-After).
A compartment larger than MAX_SUMMARY_RESOURCES is refused rather than summarised on a request.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import redis
from sqlalchemy import Engine

from store import patient_cache, reads
from treatment_lines.engine import summarise
from treatment_lines.rules import load_rules

MAX_SUMMARY_RESOURCES = int(os.environ.get("GATEWAY_MAX_SUMMARY_RESOURCES", "20000"))
LOCK_SECONDS = 60
WAIT_SECONDS = float(os.environ.get("GATEWAY_SUMMARY_WAIT_SECONDS", "20"))


class SummaryBusy(Exception):
    """Another process is computing this patient's summary and did not finish within the wait."""


class SummaryTooLarge(Exception):
    def __init__(self, size: int):
        super().__init__(f"the compartment holds {size} resources; summaries are computed up to {MAX_SUMMARY_RESOURCES}")
        self.size = size


def variant() -> str:
    """The cache variant: the rule pack's version is part of it, so a new pack never serves old lines."""
    return patient_cache.variant_key("treatment-lines", load_rules()["version"])


def summary_bytes(engine: Engine, pid: str) -> bytes:
    size = reads.compartment_size(engine, pid)
    if size > MAX_SUMMARY_RESOURCES:
        raise SummaryTooLarge(size)
    return json.dumps(summarise(reads.compartment(engine, pid)), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def cached_summary(engine: Engine, client: redis.Redis | None, pid: str) -> tuple[bytes, str, bool]:
    """(summary JSON, etag, hit) for the patient's current version, computed at most once at a time."""
    version = reads.patient_version(engine, pid)
    name = variant()
    stored = patient_cache.get(client, pid, version, name)
    if stored is not None:
        return stored, patient_cache.etag(pid, version, name), True
    lock_key, token = f"lock:{{{pid}}}:summary", uuid.uuid4().hex
    try:
        owner = client is None or bool(client.set(lock_key, token, nx=True, ex=LOCK_SECONDS))
    except redis.RedisError:
        owner = True  # no Redis: no cache and no lock; compute here
    if client is not None and not owner:  # without Redis every process owns its computation
        return _wait_for(engine, client, pid, name)
    try:
        return patient_cache.cached_view(client, pid, version, name, lambda: summary_bytes(engine, pid),
                                         lambda: reads.patient_version(engine, pid))
    finally:
        if client is not None:
            try:
                if client.get(lock_key) == token.encode():
                    client.delete(lock_key)
            except redis.RedisError:
                pass


def _wait_for(engine: Engine, client: redis.Redis, pid: str, name: str) -> tuple[bytes, str, bool]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        version = reads.patient_version(engine, pid)
        stored = patient_cache.get(client, pid, version, name)
        if stored is not None:
            return stored, patient_cache.etag(pid, version, name), True
        if not client.exists(f"lock:{{{pid}}}:summary"):
            return cached_summary(engine, client, pid)
    raise SummaryBusy(pid)
