"""Applies planned Bundle entries to Redis: all-or-nothing per transaction, idempotent on identifiers.

Optimistic concurrency: the identifier-index and resource keys involved are WATCHed while ids and versions
are worked out, and the writes go in one MULTI/EXEC; a concurrent write makes EXEC fail and the whole
entry set is planned again. An identical re-send changes nothing (no new version), so replays are harmless.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field

import redis

from mappings.errors import Issue
from mappings.references import parse_reference
from store import keys
from store.bundle_plan import PlannedEntry
from store.references import iter_references, patient_of, rewrite_references

MAX_ATTEMPTS = 20
_ID_NAMESPACE = uuid.UUID("6f1c1b7e-3f5e-5d0a-9d1e-6b2a4c8e0f11")


@dataclass
class EntryOutcome:
    status: str
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    resource: dict | None = None
    issues: list[Issue] = field(default_factory=list)
    patient: str | None = None


class TransactionFailed(Exception):
    """The transaction cannot be applied; nothing was written. status: 400, 404, 409 or 412."""

    def __init__(self, issues: list[Issue], status: int):
        super().__init__(issues[0].message if issues else "transaction failed")
        self.issues, self.status = issues, status


def dumps(resource: dict) -> bytes:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def now_instant() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def conditional_id(rtype: str, token: str) -> str:
    """The id a conditional create/update gives a new resource: derived from the identifier, so that two
    gateways creating the same identifier at once create the same resource, not two."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{rtype}|{token}"))


def _content(resource: dict | None) -> dict | None:
    if resource is None:
        return None
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    stripped = {k: v for k, v in resource.items() if k not in ("meta", "id")}
    if meta:
        stripped["meta"] = meta
    return stripped


def apply_entries(client: redis.Redis, planned: list[PlannedEntry], known_urls: dict[str, str] | None = None) -> list[EntryOutcome]:
    """Apply entries as one all-or-nothing unit; raises TransactionFailed with nothing written."""
    if not planned:
        return []
    for _ in range(MAX_ATTEMPTS):
        with client.pipeline() as pipe:
            try:
                return _attempt(pipe, planned, dict(known_urls or {}))
            except redis.WatchError:
                continue
    raise TransactionFailed([Issue("Bundle", "too much concurrent change to the same resources; retry", "transient")], 409)


def _attempt(pipe, planned: list[PlannedEntry], urls: dict[str, str]) -> list[EntryOutcome]:
    ident_keys = [keys.identifier(p.rtype, p.identifier) for p in planned if p.identifier]
    if ident_keys:
        pipe.watch(*ident_keys)
    ids: dict[int, str] = {}
    existing_by_condition: dict[int, bool] = {}
    for p in planned:
        found = pipe.get(keys.identifier(p.rtype, p.identifier)) if p.identifier else None
        existing_by_condition[p.index] = found is not None
        if found is not None:
            ids[p.index] = found.decode()
        elif p.rid:
            ids[p.index] = p.rid
        elif p.identifier and p.method == "PUT":
            ids[p.index] = conditional_id(p.rtype, p.identifier)
        else:
            ids[p.index] = str(uuid.uuid4())
        if p.full_url:
            urls[p.full_url] = f"{p.rtype}/{ids[p.index]}"
    res_keys = [keys.resource(p.rtype, ids[p.index]) for p in planned]
    pipe.watch(*res_keys)
    currents = [json.loads(c) if c else None for c in (pipe.get(k) for k in res_keys)]
    produced = {f"{p.rtype}/{ids[p.index]}" for p in planned if p.method != "DELETE"}
    stamp = now_instant()
    outcomes, writes, issues, status = [], [], [], 400
    for p, current in zip(planned, currents):
        rid = ids[p.index]
        if p.method == "POST" and p.identifier and existing_by_condition[p.index] and current is not None:
            outcomes.append(_existing(p, rid, current))
            continue
        if p.method == "DELETE":
            outcomes.append(EntryOutcome("204 No Content" if current else "404 Not Found"))
            if current:
                writes.append((p, rid, current, None))
            continue
        if p.if_match and (current is None or f'W/"{current["meta"]["versionId"]}"' != p.if_match):
            issues.append(Issue(f"{p.path}.request.ifMatch", f"version mismatch: ifMatch {p.if_match}, current "
                                f"{'none' if current is None else current['meta']['versionId']}", "conflict"))
            status = 412
            outcomes.append(EntryOutcome("412 Precondition Failed"))
            continue
        resource = rewrite_references(p.resource, lambda ref: urls.get(ref, ref))
        resource["id"] = rid
        missing = _missing_local_targets(pipe, resource, produced, p.path)
        if missing:
            issues += missing
            status = 404 if status == 400 else status
            outcomes.append(EntryOutcome("404 Not Found"))
            continue
        if current is not None and _content(current) == _content(resource):
            outcomes.append(_existing(p, rid, current))
            continue
        version = int(current["meta"]["versionId"]) + 1 if current else 1
        resource["meta"] = {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": stamp}
        resource = {"resourceType": resource["resourceType"], "id": rid, "meta": resource["meta"],
                    **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}
        outcomes.append(EntryOutcome("201 Created" if current is None else "200 OK", f"{p.rtype}/{rid}/_history/{version}",
                                     f'W/"{version}"', stamp, resource))
        writes.append((p, rid, current, resource))
    if issues:
        raise TransactionFailed(issues, status)
    _write(pipe, writes, stamp)
    return outcomes


def _existing(p: PlannedEntry, rid: str, current: dict) -> EntryOutcome:
    version = current["meta"]["versionId"]
    return EntryOutcome("200 OK", f"{p.rtype}/{rid}/_history/{version}", f'W/"{version}"',
                        current["meta"]["lastUpdated"], current, patient=patient_of(current))


def _missing_local_targets(pipe, resource: dict, produced: set[str], path: str) -> list[Issue]:
    """Relative references must point to a resource we hold or one this bundle creates."""
    issues = []
    for ref_path, ref in iter_references(resource, f"{path}.resource"):
        rtype, rid = parse_reference(ref)
        if rtype is None or ref.startswith(("http://", "https://", "#")) or ref in produced:
            continue
        if not pipe.exists(keys.resource(rtype, rid)):
            issues.append(Issue(ref_path, f"reference {ref!r} points to a resource this server does not hold", "not-found"))
    return issues


def _write(pipe, writes: list, stamp: str) -> None:
    score = int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    owners = {f"{p.rtype}/{rid}": patient_of(new or current) for p, rid, current, new in writes}
    compartments = []
    for p, rid, current, new in writes:
        member = f"{p.rtype}/{rid}"
        old_owner = pipe.get(keys.owner(p.rtype, rid))
        pid = owners[member] or _provenance_owner(pipe, new, owners)
        compartments.append((pid, old_owner.decode() if old_owner else None))
    pipe.multi()
    for (p, rid, current, new), (pid, old_pid) in zip(writes, compartments):
        member = f"{p.rtype}/{rid}"
        if new is None:
            pipe.delete(keys.resource(p.rtype, rid))
            pipe.zrem(keys.type_index(p.rtype), rid)
            for ident in current.get("identifier", []):
                pipe.delete(keys.identifier(p.rtype, f"{ident.get('system', '')}|{ident.get('value', '')}"))
        else:
            data = dumps(new)
            pipe.set(keys.resource(p.rtype, rid), data)
            pipe.rpush(keys.history(p.rtype, rid), data)
            pipe.zadd(keys.type_index(p.rtype), {rid: score})
            for ident in new.get("identifier", []):
                pipe.set(keys.identifier(p.rtype, f"{ident.get('system', '')}|{ident.get('value', '')}"), rid)
        for patient in {old_pid, pid} - {None}:
            if new is None or patient != pid:
                pipe.zrem(keys.members(patient), member)
            else:
                pipe.zadd(keys.members(patient), {member: score})
                pipe.set(keys.owner(p.rtype, rid), patient)
            pipe.incr(keys.patient_version(patient))
            pipe.zadd(keys.CHANGED, {patient: score})
        if new is None:
            pipe.delete(keys.owner(p.rtype, rid))
    pipe.execute()


def _provenance_owner(pipe, resource: dict | None, owners: dict[str, str | None]) -> str | None:
    """A Provenance joins the compartment of the first target that has one (in this bundle or stored)."""
    if not resource or resource.get("resourceType") != "Provenance":
        return None
    for target in resource.get("target", []):
        ref = target.get("reference", "")
        if owners.get(ref):
            return owners[ref]
        rtype, rid = parse_reference(ref)
        if rtype:
            stored = pipe.get(keys.owner(rtype, rid))
            if stored:
                return stored.decode()
    return None
