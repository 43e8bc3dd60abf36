"""Pull by FHIR Bulk Data: an all-patients pull from an upstream whose CapabilityStatement offers `$export`
kicks off an export (Patient, system or Group level, as the upstream is configured), polls its status URL as
told (Retry-After, X-Progress), downloads each NDJSON file streaming to a spool file, and merges it through the
same merge as the paged pull (workers/merge.py: id map, baselines, conflicts). `_since` comes from the pull
watermark; the watermark becomes the manifest's `transactionTime`. The upstream job is deleted at the end.

When the upstream does not offer `$export`, or refuses the kick-off, the caller falls back to paged search.
An export that fails upstream is reported in the job's errors, and the caller pages instead. Every call goes
through the one client (workers/fhir_client.py). The job's checkpoint (status URL, files and lines merged)
lives in the RQ job's meta, so a worker killed mid-pull is resumed by the re-run without exporting again.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import requests
from rq import get_current_job

from workers import merge, sync_state
from workers.database import store
from workers.errors import SyncError, UpstreamRejected, UpstreamUnavailable
from workers.fhir_client import FhirClient, retry_after_seconds
from workers.merge import LockFor
from workers.results import Progress, Summary

log = logging.getLogger("workers.bulk_pull")
NDJSON = "application/fhir+ndjson"
BULK_DATA_IG = "http://hl7.org/fhir/uv/bulkdata/"
EXPORT_NAMES = ("export", "patient-export", "group-export")
CHECKPOINT = "bulk_pull"   # key of the checkpoint in the RQ job's meta
POLL_WAIT = 1.0            # seconds between status polls when the upstream sends no Retry-After
# Resources merged at a time, in SYNC_BATCH_SIZE units: export files are in the server's order (by type, then
# id), so a chunk holds a share of many patients and costs one transaction (and one patient lock) per patient
# in it; large chunks keep those few while memory stays bounded.
MERGE_BATCHES = 20


@dataclass
class Checkpoint:
    """Where an export pull is: the upstream status URL, and per output file how many lines are merged."""

    status_url: str
    since: str | None
    merged: dict[str, int]

    @classmethod
    def load(cls) -> Checkpoint | None:
        job = get_current_job()
        saved = (job.meta or {}).get(CHECKPOINT) if job else None
        return cls(saved["status_url"], saved.get("since"), dict(saved.get("merged", {}))) if saved else None

    def save(self) -> None:
        _note({"status_url": self.status_url, "since": self.since, "merged": self.merged})

    @staticmethod
    def clear() -> None:
        _note(None)


def _note(value: object) -> None:
    job = get_current_job()
    if job is not None:
        job.meta[CHECKPOINT] = value
        job.save_meta()


def offers_export(statement: dict) -> bool:
    """Does a CapabilityStatement offer `$export`: an operation named export (or patient-/group-export), one
    defined by the Bulk Data IG or the core `*-export` definitions, or `instantiates` the Bulk Data IG?"""
    if any(str(url).startswith(BULK_DATA_IG) for url in statement.get("instantiates") or []):
        return True
    for rest in statement.get("rest") or []:
        operations = list(rest.get("operation") or [])
        for resource in rest.get("resource") or []:
            operations += resource.get("operation") or []
        for op in operations:
            definition = str(op.get("definition") or "")
            if op.get("name") in EXPORT_NAMES or definition.rsplit("/", 1)[-1].lower().endswith("export"):
                return True
    return False


def export_path(level: str) -> str | None:
    """The kick-off path of an upstream's `export` setting (workers/upstreams.py); None for `off`."""
    if level == "off":
        return None
    if level == "system":
        return "$export"
    if level.startswith("group:"):
        return f"Group/{level.split(':', 1)[1]}/$export"
    return "Patient/$export"


def pull_by_export(client: redis.Redis, fhir: FhirClient, types: tuple[str, ...], since: str | None, summary: Summary,
                   progress: Progress, batch_size: int, lock_for: LockFor | None, job_id: str | None) -> bool:
    """Pull every patient by `$export`; True when done, False when the caller should page instead (the reason
    is in the job's meta `pull`). Transient upstream failures raise (RQ retries the job from its checkpoint)."""
    checkpoint = Checkpoint.load()
    if checkpoint is not None and not _still_there(fhir, checkpoint.status_url):
        checkpoint = None  # the re-run of a killed job came after the upstream dropped the export: start another
    if checkpoint is None:
        status_url = _kick_off(fhir, types, since, progress)
        if status_url is None:
            return False
        checkpoint = Checkpoint(status_url, since, {})
        checkpoint.save()
    try:
        manifest = _finished(fhir, checkpoint.status_url, progress)
    except (UpstreamRejected, UpstreamUnavailable) as exc:
        Checkpoint.clear()
        summary.error(f"the upstream's bulk export failed ({exc}); pulled by paged search instead")
        progress.note("pull", {"mode": "search", "fallback": "the upstream's bulk export failed"})
        progress.note("export", None)  # its last progress text no longer describes anything
        return False
    _merge_outputs(client, fhir, manifest, types, checkpoint, summary, progress, batch_size, lock_for, job_id)
    _report_errors(fhir, manifest, summary)
    if manifest.get("transactionTime"):
        sync_state.save_pull_watermark(store(), fhir.upstream.name, "all", manifest["transactionTime"])
    _delete(fhir, checkpoint.status_url)
    Checkpoint.clear()
    return True


def _kick_off(fhir: FhirClient, types: tuple[str, ...], since: str | None, progress: Progress) -> str | None:
    """The status URL of a new export, or None (noted in the job) when the upstream does not take one."""
    path = export_path(fhir.upstream.export)
    if path is None:
        progress.note("pull", {"mode": "search", "fallback": "export is off for this upstream"})
        return None
    try:
        offered = offers_export(fhir.get("metadata"))
    except UpstreamRejected as exc:
        offered = False
        log.info("%s: no readable CapabilityStatement (HTTP %s); paging", fhir.upstream.name, exc.status)
    if not offered:
        progress.note("pull", {"mode": "search", "fallback": "the upstream does not offer $export"})
        return None
    params = {"_type": ",".join(types), "_outputFormat": NDJSON, **({"_since": since} if since else {})}
    try:
        answer = fhir.send("GET", fhir.url(path), params=params, headers={"Prefer": "respond-async"})
    except UpstreamRejected as exc:
        progress.note("pull", {"mode": "search", "fallback": f"the upstream refused the $export kick-off (HTTP {exc.status})"})
        return None
    location = answer.headers.get("Content-Location")
    answer.close()
    if answer.status_code != 202 or not location:
        progress.note("pull", {"mode": "search", "fallback": f"the $export kick-off answered {answer.status_code} "
                                                              "without a status URL"})
        return None
    status_url = fhir.url(location)
    progress.note("pull", {"mode": "bulk-export", "level": fhir.upstream.export, "since": since, "statusUrl": status_url})
    return status_url


def _still_there(fhir: FhirClient, status_url: str) -> bool:
    """Does the upstream still know this export (not 404/410: expired, deleted, or its server restarted)?"""
    try:
        fhir.send("GET", status_url).close()
    except UpstreamRejected as exc:
        if exc.status in (404, 410):
            Checkpoint.clear()
            return False
        raise
    except UpstreamUnavailable:
        pass  # polling tells a failed export from a slow upstream (_finished)
    return True


def _finished(fhir: FhirClient, status_url: str, progress: Progress) -> dict:
    """Poll the status URL until the manifest (200); 4xx/5xx raise (the export failed upstream)."""
    while True:
        answer = fhir.send("GET", status_url)
        if answer.status_code == 200:
            return answer.json()
        wait = retry_after_seconds(answer.headers.get("Retry-After"))
        progress.note("export", (answer.headers.get("X-Progress") or "in progress")[:100])
        answer.close()
        fhir.sleep(min(fhir.settings.retry_after_cap, POLL_WAIT if wait is None else wait))


def _outputs(manifest: dict, types: tuple[str, ...]) -> list[dict]:
    """The manifest's files of the pulled types, reference targets (Patient) first, in `types` order."""
    wanted = [o for o in manifest.get("output") or [] if isinstance(o, dict) and o.get("type") in types]
    return sorted(wanted, key=lambda o: types.index(o["type"]))


def _merge_outputs(client: redis.Redis, fhir: FhirClient, manifest: dict, types: tuple[str, ...], checkpoint: Checkpoint,
                   summary: Summary, progress: Progress, batch_size: int, lock_for: LockFor | None,
                   job_id: str | None) -> None:
    """Two passes over the spooled files: settle every local id first (so a reference to a resource of a later
    file or chunk resolves), then merge chunk by chunk, recording each merged chunk in the checkpoint."""
    outputs, size = _outputs(manifest, types), batch_size * MERGE_BATCHES
    progress.set_total(sum(int(o.get("count") or 0) for o in outputs))
    with tempfile.TemporaryDirectory(prefix="bulk-pull-") as folder:
        spooled = [(o["url"], _download(fhir, o["url"], manifest, os.path.join(folder, f"{n:04d}.ndjson"), summary))
                   for n, o in enumerate(outputs)]
        for _, path in spooled:
            for chunk in _chunks(path, size, summary=summary):
                merge.settle_ids(client, fhir.upstream.name, [r for _, r in chunk])
        for url, path in spooled:
            done = checkpoint.merged.get(url, 0)
            progress.advance(done)
            for chunk in _chunks(path, size, skip=done):
                merge.merge(client, fhir.upstream.name, fhir.base_url, [r for _, r in chunk], summary, lock_for, job_id)
                checkpoint.merged[url] = chunk[-1][0]
                checkpoint.save()
                progress.advance(len(chunk))


def _download(fhir: FhirClient, url: str, manifest: dict, path: str, summary: Summary) -> str:
    """Stream one NDJSON file to `path` (never whole in memory); an empty file when it cannot be fetched."""
    absolute = fhir.url(url)
    credentials = bool(manifest.get("requiresAccessToken")) and _same_origin(absolute, fhir.base_url)
    if manifest.get("requiresAccessToken") and not credentials:
        summary.error("an export file on another host needs our access token; it was not fetched")
        open(path, "wb").close()
        return path
    answer = fhir.send("GET", absolute, headers={"Accept": NDJSON}, stream=True, credentials=credentials)
    try:
        with open(path, "wb") as handle:
            handle.writelines(answer.iter_content(1 << 16))
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"upstream {fhir.upstream.name!r}: export file download cut ({type(exc).__name__})") from None
    finally:
        answer.close()
    return path


def _chunks(path: str, size: int, skip: int = 0, summary: Summary | None = None,
            need_id: bool = True) -> Iterator[list[tuple[int, dict]]]:
    """(line number, resource) chunks of an NDJSON file, after its first `skip` lines; blank lines skipped, and
    lines that are not a resource (reported once, by the pass given the summary) too."""
    chunk: list[tuple[int, dict]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if number <= skip or not line.strip():
                continue
            try:
                resource = json.loads(line)
                if not isinstance(resource, dict) or not resource.get("resourceType") or (need_id and not resource.get("id")):
                    raise ValueError("not a resource with an id")
            except ValueError:
                if summary is not None:
                    summary.error(f"line {number} of an export file is not a resource with an id; skipped")
                continue
            chunk.append((number, resource))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _report_errors(fhir: FhirClient, manifest: dict, summary: Summary) -> None:
    """The manifest's `error` files (OperationOutcome NDJSON): their error and fatal issues, by code (their
    diagnostics may quote patient data), into the job's errors."""
    for item in manifest.get("error") or []:
        with tempfile.NamedTemporaryFile(suffix=".ndjson") as spool:
            for chunk in _chunks(_download(fhir, item["url"], manifest, spool.name, summary), 1, need_id=False):
                for issue in chunk[0][1].get("issue", []):
                    if issue.get("severity") in ("error", "fatal"):
                        summary.error(f"the upstream's export reported {issue.get('severity')} {issue.get('code', '?')}")


def _delete(fhir: FhirClient, status_url: str) -> None:
    """DELETE the upstream's export job (its files go with it); a failure only costs the upstream disk space."""
    with suppress(SyncError):
        fhir.send("DELETE", status_url).close()


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
