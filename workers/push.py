"""Push: write a patient's resources to an upstream as transaction Bundles, without duplicates and without
overwriting upstream changes blindly (policy in docs/sync.md).

Per patient: one read of the upstream copies (a batch Bundle of searches by identifier / id per batch),
then per batch a decision for each resource and one transaction of conditional PUTs by identifier
(`PUT Type?identifier=...`; resources without identifiers go by the mapped id, `PUT Type/id`).
"""
from __future__ import annotations

from urllib.parse import quote

import redis

from mappings.fhir_vocabulary import write_rank
from mappings.references import identifier_token, parse_reference
from store import reads
from workers.database import store
from store.references import rewrite_references
from workers import conflicts, merge, sync_state
from workers.errors import UpstreamRejected
from workers.fhir_client import FhirClient
from workers.results import Progress, Summary
from workers.sync_state import Baseline, content, content_hash

RACE_RETRIES = 2  # re-reads of a patient whose upstream copy changed between our read and our write (412)


def push_patient(client: redis.Redis, fhir: FhirClient, pid: str, summary: Summary, progress: Progress,
                 batch_size: int, job_id: str | None) -> None:
    """Push one patient's compartment; the caller holds the patient's lock."""
    resources = sorted(reads.compartment(store(), pid), key=lambda r: (write_rank(r["resourceType"]), r["id"]))
    for attempt in range(RACE_RETRIES + 1):
        try:
            _push_resources(client, fhir, resources, summary, progress, batch_size, job_id, pid)
            return
        except UpstreamRejected as exc:
            if exc.status != 412 or attempt == RACE_RETRIES:
                raise


def _push_resources(client, fhir: FhirClient, resources: list[dict], summary: Summary, progress: Progress,
                    batch_size: int, job_id: str | None, pid: str) -> None:
    name = fhir.upstream.name
    refs = [_ref(r) for r in resources]
    mapped = sync_state.upstream_ids(store(), name, refs)
    remote: dict[str, dict | None] = {}
    for batch in _chunks(resources, batch_size):
        remote.update(read_upstream(fhir, batch, mapped, summary))
    # Upstream ids for every resource of the patient before any write, so forward references and cycles
    # (a Patient pointing at its Condition) resolve: the id found upstream, else the mapped one, else ours.
    uids = {ref: (found["id"] if (found := remote.get(ref)) else mapped.get(ref, ref.split("/", 1)[1])) for ref in refs}
    targets = {**_outside_targets(client, name, resources, uids), **uids}
    for batch in _chunks(resources, batch_size):
        _push_batch(client, fhir, batch, remote, uids, targets, summary, job_id, pid)
        progress.advance(len(batch))


def read_upstream(fhir: FhirClient, batch: list[dict], mapped: dict[str, str], summary: Summary) -> dict[str, dict | None]:
    """Local ref -> the upstream copy (None when absent), in one batch request. Resources with identifiers
    are found by identifier, the others by mapped (or our own) id. Ambiguous ones are left out and reported."""
    by_token: dict[str, dict[str, str]] = {}  # type -> identifier token -> local ref
    by_id: dict[str, dict[str, str]] = {}     # type -> upstream id -> local ref
    for r in batch:
        if r.get("identifier"):
            by_token.setdefault(r["resourceType"], {})[identifier_token(r["identifier"][0])] = _ref(r)
        else:
            by_id.setdefault(r["resourceType"], {})[mapped.get(_ref(r), r["id"])] = _ref(r)
    searches = [(t, "identifier", m) for t, m in by_token.items()] + [(t, "_id", m) for t, m in by_id.items()]
    entries = [{"request": {"method": "GET", "url": f"{t}?{param}={','.join(quote(_escape(k), safe='') for k in m)}"
                            f"&_count={min(1000, 2 * len(m) + 10)}"}} for t, param, m in searches]
    answer = fhir.transaction({"resourceType": "Bundle", "type": "batch", "entry": entries})
    found: dict[str, list[dict]] = {}
    for (rtype, param, wanted), entry in zip(searches, answer.get("entry", [])):
        status = entry.get("response", {}).get("status", "")
        if not status.startswith("200"):
            raise UpstreamRejected(f"upstream {fhir.upstream.name!r} search {rtype}: {status}", int(status[:3] or 0))
        for hit in (e["resource"] for e in entry["resource"].get("entry", []) if e.get("search", {}).get("mode", "match") == "match"):
            keys_of_hit = [identifier_token(i) for i in hit.get("identifier", [])] if param == "identifier" else [hit["id"]]
            for key in keys_of_hit:
                if key in wanted:
                    found.setdefault(wanted[key], []).append(hit)
    result: dict[str, dict | None] = {}
    for r in batch:
        hits = {h["id"]: h for h in found.get(_ref(r), [])}
        if len(hits) > 1:
            summary.error(f"{len(hits)} upstream resources carry this resource's identifier; not pushed", _ref(r))
            continue
        result[_ref(r)] = next(iter(hits.values()), None)
    return result


def _push_batch(client, fhir: FhirClient, batch: list[dict], remote: dict, uids: dict, targets: dict,
                summary: Summary, job_id: str | None, pid: str) -> None:
    name = fhir.upstream.name
    bases = sync_state.baselines(store(), name, [_ref(r) for r in batch])
    writes, synced, wins = [], {}, []
    for r in batch:
        ref = _ref(r)
        if ref not in remote:
            continue  # ambiguous upstream copy, already reported
        outgoing, up, base, local_hash = to_upstream(r, uids[ref], targets), remote[ref], bases.get(ref), content_hash(r)
        if up is None:
            writes.append((r, outgoing, None, local_hash))
        elif content(up) == content(outgoing):
            summary.unchanged += 1
            synced[ref] = Baseline(_version(up), local_hash)
        elif base and base.upstream_version == _version(up):
            writes.append((r, outgoing, up, local_hash))  # only we changed: overwrite
        elif base and base.local_hash == local_hash:
            wins.append(up)  # only the upstream changed: it wins, we take its copy
        else:
            summary.conflicts.append(conflicts.record(store(), name, ref, pid, r, up,
                                                      conflicts.diff_paths(outgoing, up), job_id))
    sync_state.save_baselines(store(), name, synced)
    sync_state.remember_ids(store(), name, {ref: uids[ref] for ref in map(_ref, batch) if ref in remote})
    if writes:
        _write(client, fhir, writes, summary)
    if wins:
        before = summary.updated + summary.created
        merge.merge(client, name, fhir.base_url, wins, summary, job_id=job_id)
        gained = summary.updated + summary.created - before
        summary.updated, summary.upstream_wins = summary.updated - gained, summary.upstream_wins + gained


def _write(client, fhir: FhirClient, writes: list[tuple], summary: Summary) -> None:
    entries = []
    for local, outgoing, up, _ in writes:
        rtype = outgoing["resourceType"]
        request = ({"method": "PUT", "url": f"{rtype}?identifier={quote(identifier_token(outgoing['identifier'][0]), safe='')}"}
                   if outgoing.get("identifier") else {"method": "PUT", "url": f"{rtype}/{outgoing['id']}"})
        if up is not None:
            request["ifMatch"] = f'W/"{_version(up)}"'  # guards the read-to-write window where servers honour it
        entries.append({"fullUrl": f"{fhir.base_url}/{rtype}/{outgoing['id']}", "resource": outgoing, "request": request})
    try:
        answer = fhir.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    except UpstreamRejected as exc:
        if exc.status == 412:
            raise  # someone wrote in between: the caller re-reads
        for local, *_ in writes:
            summary.error(f"upstream refused the transaction (HTTP {exc.status})", _ref(local))
        return
    baselines, ids = {}, {}
    for (local, outgoing, up, local_hash), entry in zip(writes, answer.get("entry", [])):
        uid, version = _location(entry["response"]["location"])
        if up is None:
            summary.created += 1
        else:
            summary.updated += 1
        baselines[_ref(local)] = Baseline(version, local_hash)
        ids[_ref(local)] = uid
    sync_state.remember_ids(store(), fhir.upstream.name, ids)
    sync_state.save_baselines(store(), fhir.upstream.name, baselines)


def to_upstream(resource: dict, uid: str, targets: dict[str, str]) -> dict:
    """Our resource as the upstream should hold it: its upstream id, references to upstream ids, no meta
    the server keeps itself."""
    def to_remote(ref: str) -> str:
        rtype, rid = parse_reference(ref)
        if rtype is None or ref.startswith(("http://", "https://")):
            return ref
        mapped = targets.get(f"{rtype}/{rid}")
        return f"{rtype}/{mapped}" if mapped else ref

    return {**content(rewrite_references(resource, to_remote)), "id": uid}


def _outside_targets(client, upstream: str, resources: list[dict], uids: dict[str, str]) -> dict[str, str]:
    """Upstream ids of referenced resources outside this patient's compartment, from the id map."""
    from store.references import iter_references

    wanted = {f"{t}/{i}" for r in resources for _, ref in iter_references(r, "")
              for t, i in [parse_reference(ref)] if t and not ref.startswith(("http://", "https://"))}
    return sync_state.upstream_ids(store(), upstream, sorted(wanted - set(uids)))


def _location(location: str) -> tuple[str, str]:
    """'…/Type/id/_history/N' -> (id, N)."""
    path, _, version = location.partition("/_history/")
    return path.rstrip("/").rsplit("/", 1)[-1], version.strip("/")


def _ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _version(resource: dict) -> str:
    return str(resource.get("meta", {}).get("versionId", ""))




def _escape(value: str) -> str:
    # A comma separates OR-values in a search parameter; one inside a value must be escaped.
    return value.replace("\\", "\\\\").replace(",", "\\,")


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), max(1, size))]
