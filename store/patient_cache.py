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
VERSION_SLOT = "{version}"
# The read path in one round trip: does the patient exist, its write counter, the entry cached under that counter.
_LOOKUP = """
local version = redis.call('GET', KEYS[2]) or '0'
local at = string.find(ARGV[1], ARGV[2], 1, true)
local key = string.sub(ARGV[1], 1, at - 1) .. version .. string.sub(ARGV[1], at + string.len(ARGV[2]))
return {redis.call('EXISTS', KEYS[1]), version, redis.call('GET', key)}
"""
_LOOKUP_SHA = hashlib.sha1(_LOOKUP.encode()).hexdigest()


def variant_key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def etag(pid: str, version: int, variant: str) -> str:
    return f'W/"{pid}.{version}.{variant}"'


def lookup(client: redis.Redis, pid: str, variant: str) -> tuple[bool, int, bytes | None]:
    """(patient exists, its version, bytes cached for that version or None), read in one round trip."""
    patient_key, template = keys.resource("Patient", pid), keys.cache(pid, VERSION_SLOT, variant)  # type: ignore[arg-type]
    arguments = (2, patient_key, keys.patient_version(pid), template, VERSION_SLOT)
    try:
        try:
            exists, version, stored = client.evalsha(_LOOKUP_SHA, *arguments)
        except redis.exceptions.NoScriptError:  # first call on this server: EVAL loads the script
            exists, version, stored = client.eval(_LOOKUP, *arguments)
    except redis.ResponseError:  # no Lua (in-process fakeredis without lupa): three reads
        exists = client.exists(patient_key)
        version = reads.patient_version(client, pid)
        stored = client.get(keys.cache(pid, version, variant))
    return bool(exists), int(version), stored


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
