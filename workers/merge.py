"""Merging upstream resources into the gateway store: map ids, rewrite references, decide per resource
(new, unchanged, upstream wins, conflict) and write each patient's share through apply_entries, which bumps
the patient's version and so invalidates its cached bundles."""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import ContextManager

import redis

from mappings.errors import InputError
from mappings.references import identifier_token, parse_reference
from store import db, reads
from store.bundle_plan import plan_bundle
from store.references import patient_of, rewrite_references
from store.writes import TransactionFailed, apply_entries
from workers import conflicts, sync_state
from workers.database import store
from workers.queues import enqueue_summaries
from workers.results import Summary
from workers.sync_state import Baseline, content, content_hash

_NAMESPACE = uuid.UUID("2b7e4c61-0f7d-4a47-9a59-4c1e8d0b5e21")
KEPT_META = ("tag", "profile", "security")
LockFor = Callable[[str], ContextManager]


def merge(client: redis.Redis, upstream: str, base_url: str, remotes: list[dict], summary: Summary,
          lock_for: LockFor | None = None, job_id: str | None = None) -> None:
    """Write upstream resources into the store, one all-or-nothing transaction per patient."""
    remotes = _newest_versions(remotes)
    lids = _local_ids(client, upstream, remotes)
    targets = _target_map(client, upstream, remotes, lids)
    groups: dict[str | None, list[tuple[dict, dict]]] = {}
    for remote in remotes:
        local = localize(remote, lids[_uref(remote)], targets, base_url)
        groups.setdefault(patient_of(local), []).append((remote, local))
    lock_for = lock_for or (lambda pid: contextlib.nullcontext())
    for pid, items in groups.items():
        with (lock_for(pid) if pid else contextlib.nullcontext()):
            _merge_group(client, upstream, base_url, pid, items, summary, job_id)


def settle_ids(client: redis.Redis, upstream: str, remotes: list[dict]) -> None:
    """Record the local id every upstream resource will get (as merge would pick it) before any is written, so
    that a merge done in chunks (a bulk export's files) resolves references to resources of later chunks."""
    lids = _local_ids(client, upstream, remotes)
    sync_state.remember_ids(store(), upstream, {f"{uref.split('/', 1)[0]}/{lid}": uref.split("/", 1)[1]
                                               for uref, lid in lids.items()})


def localize(remote: dict, lid: str, targets: dict[str, str], base_url: str) -> dict:
    """The upstream resource in local form: our id, references to our ids (absolute upstream references for
    targets we do not hold, so the link survives), server-kept meta dropped."""
    def to_local(ref: str) -> str:
        rtype, rid = parse_reference(ref)
        if rtype is None or (ref.startswith(("http://", "https://")) and not ref.startswith(base_url + "/")):
            return ref
        local = targets.get(f"{rtype}/{rid}")
        return f"{rtype}/{local}" if local else f"{base_url}/{rtype}/{rid}"

    local = rewrite_references(remote, to_local)
    local["id"] = lid
    meta = {k: v for k, v in remote.get("meta", {}).items() if k in KEPT_META}
    local.pop("meta", None)
    if meta:
        local["meta"] = meta
    return local


def _uref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _version(resource: dict) -> str:
    return str(resource.get("meta", {}).get("versionId", ""))


def _newest_versions(remotes: list[dict]) -> list[dict]:
    newest: dict[str, dict] = {}
    for r in remotes:
        seen = newest.get(_uref(r))
        if seen is None or int(_version(r) or 0) > int(_version(seen) or 0):
            newest[_uref(r)] = r
    # Patients first: their compartments are what the other resources join.
    return sorted(newest.values(), key=lambda r: r["resourceType"] != "Patient")


def _local_ids(client: redis.Redis, upstream: str, remotes: list[dict]) -> dict[str, str]:
    """Upstream 'Type/id' -> local id: the id map, else our resource with the same identifier, else a new
    id derived from the upstream one (so a re-run after a crash picks the same id)."""
    known = sync_state.local_ids(store(), upstream, [_uref(r) for r in remotes])
    for r in remotes:
        if _uref(r) in known:
            continue
        for ident in r.get("identifier", []):
            found = _held_by_identifier(r["resourceType"], ident)
            if found:
                known[_uref(r)] = found
                break
        else:
            known[_uref(r)] = str(uuid.uuid5(_NAMESPACE, f"{upstream}|{_uref(r)}"))
    return known


def _held_by_identifier(rtype: str, ident: dict) -> str | None:
    """The id of the one live resource of rtype holding this identifier (None for none or several)."""
    from store.search import match_rows

    if not ident.get("value"):
        return None
    with db.reading(store()) as conn:
        rows = match_rows(conn, rtype, [("identifier", identifier_token(ident))], 2)
    return rows[0]["res_id"] if len(rows) == 1 else None


def _target_map(client: redis.Redis, upstream: str, remotes: list[dict], lids: dict[str, str]) -> dict[str, str]:
    """Every upstream reference target we can name locally: this pull's resources plus the id map."""
    from store.references import iter_references

    wanted = set()
    for r in remotes:
        for _, ref in iter_references(r, ""):
            rtype, rid = parse_reference(ref)
            if rtype:
                wanted.add(f"{rtype}/{rid}")
    mapped = sync_state.local_ids(store(), upstream, sorted(wanted - set(lids)))
    return {**mapped, **lids}


def _merge_group(client: redis.Redis, upstream: str, base_url: str, pid: str | None, items: list[tuple[dict, dict]],
                 summary: Summary, job_id: str | None) -> None:
    refs = [f"{local['resourceType']}/{local['id']}" for _, local in items]
    held = {f"{r['resourceType']}/{r['id']}": r for r in reads.load_many(store(), [(t, i) for t, _, i in (ref.partition("/") for ref in refs)])}
    currents = {ref: held.get(ref) for ref in refs}
    bases = sync_state.baselines(store(), upstream, refs)
    writes, synced = [], {}
    for (remote, local), ref in zip(items, refs):
        current, base = currents[ref], bases.get(ref)
        if base and base.upstream_version == _version(remote):
            summary.duplicates += 1  # seen before (overlap window, or we wrote this version ourselves)
        elif current is None:
            writes.append((remote, local, "created"))
        elif content(current) == content(local):
            summary.unchanged += 1
            synced[ref] = Baseline(_version(remote), content_hash(current))
        elif base and content_hash(current) == base.local_hash:
            writes.append((remote, local, "updated"))
        else:
            summary.conflicts.append(conflicts.record(store(), upstream, ref, pid, current, remote,
                                                      conflicts.diff_paths(current, local), job_id))
    sync_state.save_baselines(store(), upstream, synced)
    sync_state.remember_ids(store(), upstream, {ref: remote["id"] for (remote, _), ref in zip(items, refs)})
    if writes:
        _write(client, upstream, writes, summary, base_url)


def _write(client: redis.Redis, upstream: str, writes: list[tuple[dict, dict, str]], summary: Summary,
           base_url: str) -> None:
    writes = _valid_only(writes, summary, base_url)
    if not writes:
        return
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": local, "request": {"method": "PUT", "url": f"{local['resourceType']}/{local['id']}"}}
        for _, local, _ in writes]}
    _, planned = plan_bundle(bundle, len(writes))
    try:
        outcomes = apply_entries(store(), planned)
    except TransactionFailed as exc:
        for _, local, _ in writes:
            summary.error(f"local store refused the merge ({exc.status}: {exc.issues[0].code})",
                          f"{local['resourceType']}/{local['id']}")
        return
    baselines = {}
    for (remote, local, kind), outcome in zip(writes, outcomes):
        setattr(summary, kind, getattr(summary, kind) + 1)
        if outcome.resource is not None:  # every merge write is a PUT, which answers with the stored resource
            baselines[f"{local['resourceType']}/{local['id']}"] = Baseline(_version(remote), content_hash(outcome.resource))
    sync_state.save_baselines(store(), upstream, baselines)
    written = {pid for o in outcomes if o.resource is not None for pid in [patient_of(o.resource)] if pid}
    if written:
        enqueue_summaries(client, written)  # pulled changes get their treatment lines recomputed too


def _valid_only(writes: list[tuple[dict, dict, str]], summary: Summary, base_url: str) -> list[tuple[dict, dict, str]]:
    """Drop resources our validation refuses (reported as errors), then point references to the dropped
    new ones at their upstream copy, so the rest of the patient's record still goes in."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": local, "request": {"method": "PUT", "url": f"{local['resourceType']}/{local['id']}"}}
        for _, local, _ in writes]}
    try:
        _, planned = plan_bundle(bundle, len(writes))
    except InputError as exc:
        summary.error(f"pulled resources are not a usable bundle ({exc.issues[0].code})")
        return []
    bad = {p.index for p in planned if p.issues}
    if not bad:
        return writes
    dropped = {}
    for i in sorted(bad):
        remote, local, _ = writes[i]
        summary.error(f"refused by local validation ({planned[i].issues[0].code})", _uref(local))
        dropped[_uref(local)] = f"{base_url}/{_uref(remote)}"
    kept = [w for i, w in enumerate(writes) if i not in bad]
    return [(remote, rewrite_references(local, lambda ref: dropped.get(ref, ref)), kind) for remote, local, kind in kept]
