"""What the gateway remembers per upstream: id maps, per-resource sync baselines and watermarks."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import redis

from workers import sync_keys


@dataclass(frozen=True)
class Baseline:
    """The upstream versionId we last wrote or read for a resource, and a hash of our content at that time."""

    upstream_version: str
    local_hash: str


def content(resource: dict) -> dict:
    """The part of a resource that is data: no id and no server-kept meta (versionId, lastUpdated, source)."""
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated", "source")}
    body = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    if meta:
        body["meta"] = meta
    return body


def content_hash(resource: dict) -> str:
    return hashlib.sha256(json.dumps(content(resource), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def upstream_id(client: redis.Redis, upstream: str, ref: str) -> str | None:
    value = client.hget(sync_keys.id_map(upstream), ref)
    return value.decode() if value else None


def upstream_ids(client: redis.Redis, upstream: str, refs: list[str]) -> dict[str, str]:
    if not refs:
        return {}
    values = client.hmget(sync_keys.id_map(upstream), refs)
    return {ref: v.decode() for ref, v in zip(refs, values) if v}


def local_ids(client: redis.Redis, upstream: str, upstream_refs: list[str]) -> dict[str, str]:
    """'Type/upstreamId' -> local id for the refs we have mapped."""
    if not upstream_refs:
        return {}
    values = client.hmget(sync_keys.reverse_map(upstream), upstream_refs)
    return {ref: v.decode() for ref, v in zip(upstream_refs, values) if v}


def remember_ids(client: redis.Redis, upstream: str, pairs: dict[str, str]) -> None:
    """pairs: 'Type/localId' -> upstream id; both directions are written together."""
    if not pairs:
        return
    reverse = {f"{ref.split('/', 1)[0]}/{uid}": ref.split("/", 1)[1] for ref, uid in pairs.items()}
    with client.pipeline() as pipe:
        pipe.hset(sync_keys.id_map(upstream), mapping=pairs)
        pipe.hset(sync_keys.reverse_map(upstream), mapping=reverse)
        pipe.execute()


def baselines(client: redis.Redis, upstream: str, refs: list[str]) -> dict[str, Baseline]:
    if not refs:
        return {}
    values = client.hmget(sync_keys.state(upstream), refs)
    result = {}
    for ref, raw in zip(refs, values):
        if raw:
            data = json.loads(raw)
            result[ref] = Baseline(data["uv"], data["lh"])
    return result


def save_baselines(client: redis.Redis, upstream: str, items: dict[str, Baseline]) -> None:
    if items:
        client.hset(sync_keys.state(upstream), mapping={
            ref: json.dumps({"uv": b.upstream_version, "lh": b.local_hash}) for ref, b in items.items()})


def pull_watermark(client: redis.Redis, upstream: str, scope: str) -> str | None:
    value = client.get(sync_keys.pull_watermark(upstream, scope))
    return value.decode() if value else None


def save_pull_watermark(client: redis.Redis, upstream: str, scope: str, instant: str) -> None:
    # Only ever forwards: a slow job finishing late must not move the watermark back.
    current = pull_watermark(client, upstream, scope)
    if current is None or instant > current:
        client.set(sync_keys.pull_watermark(upstream, scope), instant)


def push_watermark(client: redis.Redis, upstream: str) -> int | None:
    value = client.get(sync_keys.push_watermark(upstream))
    return int(value) if value else None


def save_push_watermark(client: redis.Redis, upstream: str, ms: int) -> None:
    current = push_watermark(client, upstream)
    if current is None or ms > current:
        client.set(sync_keys.push_watermark(upstream), ms)
