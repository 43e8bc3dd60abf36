"""FHIR Bulk Data: `POST /$import` (NDJSON uploads or a manifest of NDJSON URLs) and `$export` (Bulk Data IG v2)
at system, Patient and Group level, both on the asynchronous request pattern: 202 + Content-Location, a status
URL polled with X-Progress and Retry-After, then a manifest of NDJSON files served only to the client that
asked for them, until they expire (docs/bulk-data.md)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, g, request
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from mappings.errors import Issue
from mappings.fhir_vocabulary import now_instant
from service import bulk_quota, import_sources
from service.outcome import error, fhir_response, operation_outcome
from service.paging import base_url
from service.request_body import json_body
from store import reads
from store.bulk import result_files
from store.bundle_plan import TYPE_PATTERN
from workers import bulk_export, bulk_import, queues

bp = Blueprint("bulk", __name__)
NDJSON_TYPES = ("application/fhir+ndjson", "application/ndjson", "application/x-ndjson", "ndjson")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9.-]{1,80}\.ndjson$")
TYPE_FILTER = re.compile(r",(?=[A-Z][A-Za-z]+\?)")   # _typeFilter values are comma-separated `Type?query`s
RETRY_AFTER = "2"
BULK_JOB_TIMEOUT = 24 * 3600
RESULT_TTL = 7 * 24 * 3600


def _settings() -> tuple[int, int]:
    """(seconds exported files stay downloadable, largest NDJSON upload in bytes)."""
    return (int(os.environ.get("GATEWAY_BULK_FILE_TTL_SECONDS") or 3600),
            int(os.environ.get("GATEWAY_BULK_MAX_UPLOAD_BYTES") or 1 << 30))


def _client():
    return current_app.extensions["redis"]


def _owner() -> str:
    principal = g.get("principal")
    return principal.client if principal else "anonymous"


def _enqueue(func, folder: Path, info: dict, kind: str, job_id: str) -> Job:
    inline = current_app.extensions.get("redis_mode") == "in-process"
    meta = {"owner": _owner(), "kind": kind, "request": request.url, "transactionTime": info["transactionTime"],
            "request_id": g.get("request_id")}
    bulk_quota.track(_owner(), job_id)  # before the job can run: an inline job is finished (and pruned) at once
    return queues.queue(_client(), not inline).enqueue(func, str(folder), info, job_id=job_id, meta=meta,
                                                       job_timeout=BULK_JOB_TIMEOUT, result_ttl=RESULT_TTL,
                                                       failure_ttl=RESULT_TTL, description=f"bulk {kind}",
                                                       # Transient failures (an input URL unreachable, the database
                                                       # down): the re-run resumes from the job's checkpoint.
                                                       retry=Retry(max=3, interval=[5, 30, 120]))


def _accepted(kind: str, job: Job) -> Response:
    body = operation_outcome([Issue("$", f"{kind} accepted; poll the Content-Location URL", "informational", "information")])
    return fhir_response(body, 202, {"Content-Location": f"{base_url()}/${kind}/{job.id}"})


# -- import ------------------------------------------------------------------------------------------------
@bp.post("/$import")
def kick_off_import() -> Response:
    busy = bulk_quota.refuse_when_busy(_owner())  # before an upload of up to 1 GiB is spooled
    if busy is not None:
        return busy
    job_id = str(uuid.uuid4())
    folder = bulk_import.job_folder("import", job_id)
    info = {"transactionTime": now_instant(), "policy": current_app.config["REFERENCE_POLICY"], "urls": []}
    if request.mimetype in NDJSON_TYPES:
        request.max_content_length = _settings()[1]
        _spool_upload(folder / "input")
    else:
        urls = _manifest_urls(json_body())
        if isinstance(urls, Response):
            return urls
        info["urls"] = urls
    return _accepted("import", _enqueue(bulk_import.run_import, folder, info, "import", job_id))


def _spool_upload(folder: Path) -> None:
    """The request body to a file, block by block: an upload of any size never sits in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "0000.ndjson").open("wb") as handle:
        shutil.copyfileobj(request.stream, handle, 1 << 20)
    (folder / "names.json").write_text(json.dumps({"0000.ndjson": request.args.get("name") or "upload.ndjson"}))


def _manifest_urls(body: object) -> list[dict] | Response:
    """The NDJSON URLs of a Parameters (`input` parts with `url`), an import manifest (`input`) or an upstream's
    export completion manifest (`output`)."""
    urls: list[dict] = []
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for i, part in enumerate(body.get("parameter", [])):
            if isinstance(part, dict) and part.get("name") == "input":
                sub = {p.get("name"): p for p in part.get("part", []) if isinstance(p, dict)}
                url = (sub.get("url") or {}).get("valueUrl") or (sub.get("url") or {}).get("valueUri")
                if not isinstance(url, str):
                    return error(400, "each input part needs a url (valueUrl)", "required", f"Parameters.parameter[{i}].part")
                urls.append({"url": url})
    elif isinstance(body, dict):
        for i, item in enumerate(body.get("input") or body.get("output") or []):
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                return error(400, "each input needs a url", "required", f"input[{i}].url")
            urls.append({"url": item["url"]})
    too_many = bulk_quota.refuse_long_manifest(len(urls))
    if too_many is not None:
        return too_many
    if not urls:
        return error(400, "send NDJSON (Content-Type: application/fhir+ndjson), or a Parameters or manifest naming "
                     "NDJSON URLs", "required")
    bad = [u["url"] for u in urls if not u["url"].startswith(("http://", "https://"))]
    if bad:
        return error(400, f"only http(s) URLs can be imported, not {bad[0]!r}", "not-supported", "input.url")
    status, refused = import_sources.refused_urls([u["url"] for u in urls])  # the workers must not read internal hosts
    if refused:
        return fhir_response(operation_outcome(refused), status)
    return urls


@bp.get("/$import/<job_id>")
def import_status(job_id: str) -> Response:
    job = _own_job(job_id, "import")
    if isinstance(job, Response):
        return job
    status = job.get_status()
    if status == JobStatus.FAILED:
        return error(500, "the import failed; see the job log", "exception")
    state = (job.meta or {}).get(bulk_import.META_KEY) or {}
    if status != JobStatus.FINISHED:
        total = sum(i["lines"] for i in state.get("inputs", []))
        return _in_progress(f"{state.get('done', 0)} of {total or '?'} lines, pass {state.get('pass', 0) + 1}")
    result = bulk_import.job_folder("import", job.id) / "result"

    def files(prefix: str) -> list[dict]:
        return [{"type": t, "count": _lines(p), "url": f"{base_url()}/$import/{job.id}/{p.name}"}
                for t, p in result_files(result, prefix)]

    return fhir_response({"transactionTime": job.meta["transactionTime"], "request": job.meta["request"],
                          "requiresAccessToken": True, "output": files("output"), "error": files("error")})


@bp.get("/$import/<job_id>/<name>")
def import_file(job_id: str, name: str) -> Response:
    job = _own_job(job_id, "import")
    if isinstance(job, Response):
        return job
    return _ndjson_file(bulk_import.job_folder("import", job.id) / "result", name)


# -- export ------------------------------------------------------------------------------------------------
@bp.get("/$export")
def export_system() -> Response:
    return _kick_off_export("system", None)


@bp.get("/Patient/$export")
def export_patients() -> Response:
    return _kick_off_export("patient", None)


@bp.get("/Group/<group_id>/$export")
def export_group(group_id: str) -> Response:
    group = reads.current(current_app.extensions["store"], "Group", group_id)
    if group is None:
        return error(404, f"Group/{group_id} is not held here", "not-found")
    members = [m["entity"]["reference"].split("/", 1)[1] for m in group.get("member", [])
               if str(m.get("entity", {}).get("reference", "")).startswith("Patient/")]
    return _kick_off_export("group", members)


def _kick_off_export(level: str, members: list[str] | None) -> Response:
    if "respond-async" not in request.headers.get("Prefer", ""):
        return error(400, "$export needs the header 'Prefer: respond-async' (Bulk Data IG)", "required", "Prefer")
    fmt = request.args.get("_outputFormat")
    if fmt and fmt not in NDJSON_TYPES:
        return error(400, f"_outputFormat {fmt!r} is not served; NDJSON only", "not-supported", "?_outputFormat")
    info = _export_params()
    if isinstance(info, Response):
        return info
    busy = bulk_quota.refuse_when_busy(_owner())
    if busy is not None:
        return busy
    info.update(level=level, members=members, transactionTime=now_instant(), procedure_history=True)
    job_id = str(uuid.uuid4())
    folder = bulk_import.job_folder("export", job_id)
    return _accepted("export", _enqueue(bulk_export.run_export, folder, info, "export", job_id))


def _export_params() -> dict | Response:
    types = [t for v in request.args.getlist("_type") for t in v.split(",") if t]
    bad = [t for t in types if not TYPE_PATTERN.match(t)]
    if bad:
        return error(400, f"_type {bad[0]!r} is not a resource type", "value", "?_type")
    since = request.args.get("_since")
    try:
        since_ms = reads.instant_ms(since) if since else None
    except ValueError:
        return error(400, f"{since!r} is not a FHIR instant", "value", "?_since")
    filters: dict[str, list[list[tuple[str, str]]]] = {}
    for value in request.args.getlist("_typeFilter"):
        for query in TYPE_FILTER.split(value):
            rtype, sep, rest = query.partition("?")
            if not sep or not TYPE_PATTERN.match(rtype) or (types and rtype not in types):
                return error(400, f"_typeFilter {query!r} must be 'Type?query' for a type of _type", "value", "?_typeFilter")
            filters.setdefault(rtype, []).append(parse_qsl(rest, keep_blank_values=True))
    return {"types": types, "since_ms": since_ms, "type_filters": filters}


@bp.get("/$export/<job_id>")
def export_status(job_id: str) -> Response:
    job = _own_job(job_id, "export")
    if isinstance(job, Response):
        return job
    status = job.get_status()
    if status == JobStatus.FAILED:
        return error(500, "the export failed; see the job log", "exception")
    if status != JobStatus.FINISHED:
        return _in_progress((job.meta or {}).get(bulk_export.META_KEY) or "queued")
    result = job.return_value() or {}
    ttl = _settings()[0]
    finished = job.ended_at.timestamp() if job.ended_at else time.time()
    manifest = {"transactionTime": job.meta["transactionTime"], "request": job.meta["request"],
                "requiresAccessToken": True, "error": [],
                "output": [{"type": o["type"], "url": f"{base_url()}/$export/{job.id}/{o['file']}", "count": o["count"]}
                           for o in result.get("output", [])]}
    expires = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(finished + ttl))
    return fhir_response(manifest, 200, {"Expires": expires})


@bp.delete("/$export/<job_id>")
def export_cancel(job_id: str) -> Response:
    job = _own_job(job_id, "export")
    if isinstance(job, Response):
        return job
    _client().set(bulk_export.cancel_key(job.id), "1", ex=RESULT_TTL)
    if job.get_status() in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        job.cancel()
    shutil.rmtree(bulk_import.job_folder("export", job.id), ignore_errors=True)
    job.meta["deleted"] = True
    job.save_meta()
    return fhir_response(operation_outcome([Issue("$", "export cancelled; its files are deleted", "informational",
                                                  "information")]), 202)


@bp.get("/$export/<job_id>/<name>")
def export_file(job_id: str, name: str) -> Response:
    job = _own_job(job_id, "export")
    if isinstance(job, Response):
        return job
    if job.get_status() != JobStatus.FINISHED:
        return error(404, "the export has no files yet", "not-found")
    ended = job.ended_at.timestamp() if job.ended_at else time.time()
    if time.time() > ended + _settings()[0]:
        shutil.rmtree(bulk_import.job_folder("export", job.id), ignore_errors=True)
        return error(410, "the export's files have expired; start a new export", "expired")
    return _ndjson_file(bulk_import.job_folder("export", job.id), name)


# -- shared ------------------------------------------------------------------------------------------------
def _own_job(job_id: str, kind: str) -> Job | Response:
    """The job, only for the client that started it: anyone else is told it does not exist."""
    if not JOB_ID.match(job_id):
        return error(404, f"no {kind} job {job_id!r}", "not-found")
    try:
        job = Job.fetch(job_id, connection=_client())
    except NoSuchJobError:
        return error(404, f"no {kind} job {job_id!r}", "not-found")
    meta = job.meta or {}
    if meta.get("kind") != kind or meta.get("owner") != _owner() or meta.get("deleted"):
        return error(404, f"no {kind} job {job_id!r}", "not-found")
    return job


def _in_progress(progress: str) -> Response:
    return Response(status=202, headers={"X-Progress": progress[:100], "Retry-After": RETRY_AFTER})


def _ndjson_file(folder: Path, name: str) -> Response:
    path = folder / name
    if not FILE_NAME.match(name) or not path.is_file():
        return error(404, f"no file {name!r}", "not-found")

    def stream():
        with path.open("rb") as handle:
            yield from iter(lambda: handle.read(1 << 16), b"")

    return Response(stream(), mimetype="application/fhir+ndjson")


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
