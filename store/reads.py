"""Reading from the store: one resource, one version, a patient's compartment, what changed since when."""
from __future__ import annotations

import datetime as dt
import json

import redis

from store import keys


def read(client: redis.Redis, rtype: str, rid: str) -> bytes | None:
    return client.get(keys.resource(rtype, rid))


def vread(client: redis.Redis, rtype: str, rid: str, version: int) -> bytes | None:
    if version < 1:
        return None
    return client.lindex(keys.history(rtype, rid), version - 1)


def patient_version(client: redis.Redis, pid: str) -> int:
    return int(client.get(keys.patient_version(pid)) or 0)


def instant_ms(instant: str) -> int:
    """FHIR instant/dateTime (with zone, or a date) to epoch milliseconds, for comparisons with index scores."""
    text = instant.strip().replace("Z", "+00:00")
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp() * 1000)


def compartment(client: redis.Redis, pid: str, since_ms: int | None = None) -> list[dict]:
    """Every resource in the patient's compartment (changed at or after since_ms when given)."""
    lower = since_ms if since_ms is not None else "-inf"
    members = [m.decode() for m in client.zrangebyscore(keys.members(pid), lower, "+inf")]
    return load_many(client, [tuple(m.split("/", 1)) for m in members])


def load_many(client: redis.Redis, refs: list[tuple[str, str]]) -> list[dict]:
    if not refs:
        return []
    raw = client.mget([keys.resource(t, i) for t, i in refs])
    return [json.loads(r) for r in raw if r]


def type_ids(client: redis.Redis, rtype: str, since_ms: int | None = None) -> list[str]:
    lower = since_ms if since_ms is not None else "-inf"
    return [i.decode() for i in client.zrangebyscore(keys.type_index(rtype), lower, "+inf")]


def owner(client: redis.Redis, rtype: str, rid: str) -> str | None:
    value = client.get(keys.owner(rtype, rid))
    return value.decode() if value else None


def patients_changed_since(client: redis.Redis, since_ms: int | None) -> list[str]:
    lower = since_ms if since_ms is not None else "-inf"
    return [p.decode() for p in client.zrangebyscore(keys.CHANGED, lower, "+inf")]
