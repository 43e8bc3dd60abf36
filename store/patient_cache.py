"""Cached patient views (bundles, summaries) keyed by the patient's write counter.

Every write bumps pat:{id}:version in the same MULTI/EXEC as the data, so a cached entry can only be
found under the version it was built for: once a write is acknowledged, no reader can reach an older
entry. A view built while a write landed is served but not cached (the version moved under it).
"""
from __future__ import annotations

import hashlib
from typing import Callable

import redis

from store import keys, reads

TTL_SECONDS = 3600


def variant_key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def etag(pid: str, version: int, variant: str) -> str:
    return f'W/"{pid}.{version}.{variant}"'


def cached_view(client: redis.Redis, pid: str, variant: str, build: Callable[[], bytes]) -> tuple[bytes, str, bool]:
    """(bytes, etag, hit): stored bytes as they are on a hit; built, and cached if still current, on a miss."""
    version = reads.patient_version(client, pid)
    key = keys.cache(pid, version, variant)
    stored = client.get(key)
    if stored is not None:
        return stored, etag(pid, version, variant), True
    body = build()
    if reads.patient_version(client, pid) == version:
        client.set(key, body, ex=TTL_SECONDS)
    return body, etag(pid, version, variant), False


def current_etag(client: redis.Redis, pid: str, variant: str) -> str:
    return etag(pid, reads.patient_version(client, pid), variant)
