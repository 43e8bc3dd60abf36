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
# Patient id -> the version this process last saw: lets one pipelined round trip read the version and the
# entry cached under it together. A wrong guess only costs a second read; a hit needs the guess to equal the
# version read in the same pipeline, so no entry built for an older version is ever served.
_last_version: dict[str, int] = {}
MAX_REMEMBERED = 100_000


def variant_key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def etag(pid: str, version: int, variant: str) -> str:
    return f'W/"{pid}.{version}.{variant}"'


def lookup(client: redis.Redis, pid: str, variant: str) -> tuple[bool, int, bytes | None]:
    """(patient exists, its version, bytes cached for that version or None); one round trip when the version is known."""
    guess = _last_version.get(pid, 0)
    pipe = client.pipeline(transaction=False)
    pipe.exists(keys.resource("Patient", pid))
    pipe.get(keys.patient_version(pid))
    pipe.get(keys.cache(pid, guess, variant))
    exists, raw_version, stored = pipe.execute()
    version = int(raw_version or 0)
    if version != guess:
        if len(_last_version) >= MAX_REMEMBERED:
            _last_version.clear()
        _last_version[pid] = version
        stored = client.get(keys.cache(pid, version, variant))
    return bool(exists), version, stored


def cached_view(client: redis.Redis, pid: str, variant: str, build: Callable[[], bytes],
                found: tuple[int, bytes | None] | None = None) -> tuple[bytes, str, bool]:
    """(bytes, etag, hit): stored bytes as they are on a hit; built, and cached if still current, on a miss.

    `found` is (version, stored bytes) when the caller has already looked them up with lookup().
    """
    if found is None:
        version = reads.patient_version(client, pid)
        found = version, client.get(keys.cache(pid, version, variant))
    version, stored = found
    if stored is not None:
        return stored, etag(pid, version, variant), True
    body = build()
    if reads.patient_version(client, pid) == version:
        client.set(keys.cache(pid, version, variant), body, ex=TTL_SECONDS)
    return body, etag(pid, version, variant), False


def current_etag(client: redis.Redis, pid: str, variant: str) -> str:
    return etag(pid, reads.patient_version(client, pid), variant)
