"""Pull: fetch what changed upstream since this upstream's watermark (minus an overlap window), type by
type with paging, and merge it into the store (workers/merge.py)."""
from __future__ import annotations

import datetime as dt

import redis

from mappings.fhir_vocabulary import format_instant
from mappings.references import identifier_token
from store import reads
from workers import bulk_pull, merge, sync_state
from workers.database import store
from workers.fhir_client import FhirClient
from workers.merge import LockFor
from workers.results import Progress, Summary

PULL_TYPES = ("Patient", "Condition", "Procedure", "MedicationStatement", "MedicationRequest",
              "MedicationAdministration", "Observation")


def pull(client: redis.Redis, fhir: FhirClient, pid: str | None, summary: Summary, progress: Progress,
         batch_size: int, overlap_seconds: float, lock_for: LockFor | None, job_id: str | None) -> None:
    """Pull every patient (pid None) or one patient; advance the watermark of that scope when done."""
    name, scope = fhir.upstream.name, pid or "all"
    watermark = sync_state.pull_watermark(store(), name, scope)
    since = shift(watermark, -overlap_seconds) if watermark else None
    if pid is None and bulk_pull.pull_by_export(client, fhir, PULL_TYPES, since, summary, progress, batch_size,
                                                lock_for, job_id):
        return  # the upstream took a Bulk Data export (workers/bulk_pull.py); else the paged search below
    filters = _patient_filters(client, fhir, pid)
    if filters is None:
        summary.error("the patient is not known to this upstream (push it first)", f"Patient/{pid}")
        return
    fetched, newest = [], watermark
    for rtype in PULL_TYPES:
        params = {"_count": str(batch_size), "_sort": "_lastUpdated", **filters.get(rtype, {})}
        if since:
            params["_lastUpdated"] = f"gt{since}"
        for number, page in enumerate(fhir.pages(rtype, params)):
            if number == 0:
                progress.set_total(progress.total + int(page.get("total") or 0))
            resources = [e["resource"] for e in page.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
            fetched += resources
            for r in resources:
                stamp = r.get("meta", {}).get("lastUpdated")
                if stamp and (newest is None or stamp > newest):
                    newest = stamp
    progress.set_total(len(fetched))
    merge.merge(client, name, fhir.base_url, fetched, summary, lock_for, job_id)
    progress.advance(len(fetched))
    if newest:
        sync_state.save_pull_watermark(store(), name, scope, newest)


def _patient_filters(client: redis.Redis, fhir: FhirClient, pid: str | None) -> dict[str, dict] | None:
    """Search parameters restricting each type to one patient; {} for all patients; None when unknown."""
    if pid is None:
        return {}
    uid = sync_state.upstream_id(store(), fhir.upstream.name, f"Patient/{pid}")
    if uid is None:
        uid = _find_by_identifier(client, fhir, pid)
    if uid is None:
        return None
    return {t: ({"_id": uid} if t == "Patient" else {"patient": f"Patient/{uid}"}) for t in PULL_TYPES}


def _find_by_identifier(client: redis.Redis, fhir: FhirClient, pid: str) -> str | None:
    patient = reads.current(store(), "Patient", pid)
    identifiers = patient.get("identifier", []) if patient else []
    if not identifiers:
        return None
    ident = identifiers[0]
    page = fhir.get("Patient", {"identifier": identifier_token(ident)})
    hits = [e["resource"]["id"] for e in page.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
    return hits[0] if len(hits) == 1 else None


def shift(instant: str, seconds: float) -> str:
    """A FHIR instant moved by seconds, written the way the server stores them (UTC, milliseconds, Z):
    some servers compare these as text."""
    return format_instant(dt.datetime.fromtimestamp(reads.instant_ms(instant) / 1000 + seconds, tz=dt.UTC))
