"""Conflicts: a resource changed on both sides since the last sync. Recorded with both versions and the
paths that differ, skipped by push and pull, and resolved by choosing a side (which rewrites the baseline
so that the next push of that patient carries the chosen side over). Kept in the store of record (table
sync_conflicts): a conflict holds both copies of a clinical resource, which never live only in Redis."""
from __future__ import annotations

import hashlib
import json
import time

from sqlalchemy import Engine, select

from store import db
from store.schema import sync_conflicts
from workers.sync_state import Baseline, content, content_hash, save_baselines

KEEP = ("local", "upstream")


def conflict_id(upstream: str, local_ref: str) -> str:
    # One open conflict per resource and upstream: a new detection replaces the old record.
    return hashlib.sha1(f"{upstream}|{local_ref}".encode()).hexdigest()[:16]


def record(engine: Engine, upstream: str, local_ref: str, patient: str | None, local: dict | None,
           remote: dict, paths: list[str], job_id: str | None) -> dict:
    """Store a conflict and return its short form {id, resource} for job results. `paths` come from
    diff_paths over both copies in one reference form (the caller knows which)."""
    cid = conflict_id(upstream, local_ref)
    entry = {"id": cid, "status": "open", "upstream": upstream, "resource": local_ref, "patient": patient,
             "upstreamResource": f"{remote['resourceType']}/{remote['id']}",
             "upstreamVersion": remote.get("meta", {}).get("versionId"), "paths": paths,
             "local": local, "upstreamCopy": remote, "detectedAt": int(time.time() * 1000), "job": job_id}
    _save(engine, entry)
    return {"id": cid, "resource": local_ref}


def _save(engine: Engine, entry: dict) -> None:
    row = {"id": entry["id"], "upstream": entry["upstream"], "resource": entry["resource"],
           "patient_id": entry["patient"], "status": entry["status"], "detected_at": entry["detectedAt"],
           "body": json.dumps(entry)}
    db.write(engine, lambda conn: db.upsert(conn, sync_conflicts, [row], ["id"]))


def get(engine: Engine, cid: str) -> dict | None:
    with db.reading(engine) as conn:
        raw = conn.execute(select(sync_conflicts.c.body).where(sync_conflicts.c.id == cid)).scalar()
    return json.loads(raw) if raw else None


def list_all(engine: Engine, upstream: str | None = None, status: str | None = "open",
             limit: int = 1000) -> list[dict]:
    """Oldest first, at most `limit` (the index on status, upstream, detected_at answers it)."""
    query = select(sync_conflicts.c.body).order_by(sync_conflicts.c.detected_at, sync_conflicts.c.id).limit(limit)
    if status is not None:
        query = query.where(sync_conflicts.c.status == status)
    if upstream is not None:
        query = query.where(sync_conflicts.c.upstream == upstream)
    with db.reading(engine) as conn:
        return [json.loads(body) for body in conn.execute(query).scalars()]


def resolve(engine: Engine, entry: dict, keep: str, local_now: dict | None) -> dict:
    """Rewrite the baseline so the next push applies the chosen side; mark the conflict resolved."""
    if keep == "local":
        # The upstream copy we saw counts as synced: the next push overwrites it (unless it changed again).
        baseline = Baseline(entry["upstreamVersion"], "resolved-keep-local")
    else:
        # Our copy counts as unchanged since a sync that the upstream copy came after: it wins next time.
        baseline = Baseline("resolved-keep-upstream", content_hash(local_now) if local_now else "none")
    save_baselines(engine, entry["upstream"], {entry["resource"]: baseline})
    entry = {**entry, "status": f"resolved-keep-{keep}", "resolvedAt": int(time.time() * 1000)}
    _save(engine, entry)
    return entry


def diff_paths(local: dict | None, remote: dict | None, path: str = "") -> list[str]:
    """JSON paths (FHIRPath-like, e.g. 'valueQuantity.value', 'note[0].text') whose values differ."""
    a = content(local) if path == "" and isinstance(local, dict) else local
    b = content(remote) if path == "" and isinstance(remote, dict) else remote
    if isinstance(a, dict) and isinstance(b, dict):
        paths = []
        for key in sorted(set(a) | set(b)):
            paths += diff_paths(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return paths
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        paths = []
        for i, (x, y) in enumerate(zip(a, b)):
            paths += diff_paths(x, y, f"{path}[{i}]")
        return paths
    return [] if a == b else [path or "$"]
