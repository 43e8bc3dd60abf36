"""What the gateway remembers per upstream: id maps, per-resource sync baselines and watermarks.

It lives in the store of record (tables sync_ids, sync_baselines, sync_watermarks in store/schema.py): losing it
would mean a full re-sync, and Redis keeps only caches, queues and limits."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Column, Engine, select

from mappings import fhir_vocabulary
from mappings.fhir_vocabulary import UPSTREAM_SERVER_META
from store import db
from store.schema import sync_baselines, sync_ids, sync_watermarks


@dataclass(frozen=True)
class Baseline:
    """The upstream versionId we last wrote or read for a resource, and a hash of our content at that time."""

    upstream_version: str
    local_hash: str


def content(resource: dict) -> dict:
    """The part of a resource that is data: no id and no meta an upstream server keeps (versionId, lastUpdated,
    source)."""
    return fhir_vocabulary.content(resource, UPSTREAM_SERVER_META)


def content_hash(resource: dict) -> str:
    return hashlib.sha256(json.dumps(content(resource), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


PUSH = "push"
CHUNK = 500  # refs per IN list: well under SQLite's bound-parameter limit


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _split(ref: str) -> tuple[str, str]:
    rtype, _, rid = ref.partition("/")
    return rtype, rid


def upstream_id(engine: Engine, upstream: str, ref: str) -> str | None:
    return upstream_ids(engine, upstream, [ref]).get(ref)


def _by_type(refs: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for ref in sorted(set(refs)):
        rtype, rid = _split(ref)
        grouped.setdefault(rtype, []).append(rid)
    return grouped


def _mapped(engine: Engine, upstream: str, refs: list[str], key: Column, value: Column) -> dict[str, str]:
    """'Type/<key>' -> <value> for the refs that are mapped; one indexed IN list per type and chunk (a row-value
    (type, id) IN list made SQLite scan the whole table)."""
    found: dict[str, str] = {}
    with db.reading(engine) as conn:
        for rtype, ids in _by_type(refs).items():
            for part in _chunks(ids):
                rows = conn.execute(select(key, value).where(
                    sync_ids.c.upstream == upstream, sync_ids.c.res_type == rtype, key.in_(part)))
                found.update({f"{rtype}/{k}": v for k, v in rows})
    return found


def upstream_ids(engine: Engine, upstream: str, refs: list[str]) -> dict[str, str]:
    """'Type/localId' -> upstream id for the refs we have mapped."""
    return _mapped(engine, upstream, refs, sync_ids.c.local_id, sync_ids.c.upstream_id)


def local_ids(engine: Engine, upstream: str, upstream_refs: list[str]) -> dict[str, str]:
    """'Type/upstreamId' -> local id for the refs we have mapped."""
    return _mapped(engine, upstream, upstream_refs, sync_ids.c.upstream_id, sync_ids.c.local_id)


def remember_ids(engine: Engine, upstream: str, pairs: dict[str, str]) -> None:
    """pairs: 'Type/localId' -> upstream id; one row holds both directions."""
    if not pairs:
        return
    rows = [{"upstream": upstream, "res_type": _split(ref)[0], "local_id": _split(ref)[1], "upstream_id": uid}
            for ref, uid in sorted(pairs.items())]
    db.write(engine, lambda conn: db.upsert(conn, sync_ids, rows, ["upstream", "res_type", "local_id"]))


def baselines(engine: Engine, upstream: str, refs: list[str]) -> dict[str, Baseline]:
    found: dict[str, Baseline] = {}
    with db.reading(engine) as conn:
        for part in _chunks(sorted(set(refs))):
            rows = conn.execute(select(sync_baselines.c.ref, sync_baselines.c.upstream_version,
                                       sync_baselines.c.local_hash).where(
                sync_baselines.c.upstream == upstream, sync_baselines.c.ref.in_(part)))
            found.update({ref: Baseline(uv, lh) for ref, uv, lh in rows})
    return found


def save_baselines(engine: Engine, upstream: str, items: dict[str, Baseline]) -> None:
    if not items:
        return
    rows = [{"upstream": upstream, "ref": ref, "upstream_version": b.upstream_version, "local_hash": b.local_hash}
            for ref, b in sorted(items.items())]
    db.write(engine, lambda conn: db.upsert(conn, sync_baselines, rows, ["upstream", "ref"]))


def _watermark(engine: Engine, upstream: str, name: str) -> str | None:
    with db.reading(engine) as conn:
        return conn.execute(select(sync_watermarks.c.value).where(
            sync_watermarks.c.upstream == upstream, sync_watermarks.c.name == name)).scalar()


def _advance(engine: Engine, upstream: str, name: str, value: str) -> None:
    # Only ever forwards, decided in the database: a slow job finishing late must not move the watermark back.
    row = {"upstream": upstream, "name": name, "value": value}
    db.write(engine, lambda conn: db.upsert(conn, sync_watermarks, [row], ["upstream", "name"],
                                            only_if=lambda new: sync_watermarks.c.value < new.value))


def pull_watermark(engine: Engine, upstream: str, scope: str) -> str | None:
    """The newest upstream lastUpdated seen by a pull of scope ('all' or a patient id)."""
    return _watermark(engine, upstream, f"pull:{scope}")


def save_pull_watermark(engine: Engine, upstream: str, scope: str, instant: str) -> None:
    _advance(engine, upstream, f"pull:{scope}", instant)


def push_watermark(engine: Engine, upstream: str) -> int | None:
    """Epoch ms: local changes before this were pushed by an all-patients push."""
    value = _watermark(engine, upstream, PUSH)
    return int(value) if value else None


def save_push_watermark(engine: Engine, upstream: str, ms: int) -> None:
    _advance(engine, upstream, PUSH, f"{ms:020d}")  # zero-padded, so that text order is number order
