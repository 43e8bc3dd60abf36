"""Sync with hospital FHIR servers: POST /sync/push and /sync/pull enqueue jobs, /jobs/<id> reports them,
/sync/conflicts lists what changed on both sides and resolves it. Bad input gives an OperationOutcome."""
from __future__ import annotations

import json
import re
from enum import Enum

from flask import Blueprint, Response, current_app, request, g
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from mappings.errors import InputError, Issue
from service.outcome import error
from service.request_body import json_body
from store import reads
from workers import conflicts, jobs, queues
from workers.errors import ConfigError, UnknownUpstream
from workers.upstreams import resolve

bp = Blueprint("sync", __name__)
PATIENT_REF = re.compile(r"^Patient/[A-Za-z0-9\-.]{1,64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class JobState(str, Enum):
    QUEUED = "queued"
    RETRYING = "retrying"  # an attempt failed; RQ has it scheduled (or queued) for the next one
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"


RQ_STATES = {JobStatus.QUEUED: JobState.QUEUED, JobStatus.DEFERRED: JobState.QUEUED, JobStatus.SCHEDULED: JobState.QUEUED,
             JobStatus.CREATED: JobState.QUEUED, JobStatus.STARTED: JobState.STARTED, JobStatus.FINISHED: JobState.FINISHED,
             JobStatus.FAILED: JobState.FAILED, JobStatus.STOPPED: JobState.FAILED, JobStatus.CANCELED: JobState.FAILED}


def _client():
    return current_app.extensions["redis"]


def _inline() -> bool:
    return current_app.extensions.get("redis_mode") == "in-process"


@bp.post("/sync/push")
def sync_push() -> Response:
    upstream, patient = _sync_request()
    if patient and reads.current(current_app.extensions["store"], "Patient", patient.split("/", 1)[1]) is None:
        return error(404, f"{patient} is not in the gateway store", "not-found", "patient")
    return _accepted(queues.enqueue(_client(), jobs.push, upstream, patient, is_async=not _inline(),
                                    description=f"push to {upstream}", request_id=g.get("request_id")))


@bp.post("/sync/pull")
def sync_pull() -> Response:
    upstream, patient = _sync_request()
    return _accepted(queues.enqueue(_client(), jobs.pull, upstream, patient, is_async=not _inline(),
                                    description=f"pull from {upstream}", request_id=g.get("request_id")))


@bp.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    job = _job(job_id)
    return _json(describe(job))


@bp.post("/jobs/<job_id>/requeue")
def job_requeue(job_id: str) -> Response:
    job = _job(job_id)
    if job.get_status() != JobStatus.FAILED:
        return error(409, f"job {job_id} is {RQ_STATES.get(job.get_status(), job.get_status()).value}; only failed jobs can be re-queued", "conflict")
    job.meta.pop("lastError", None)  # a fresh run by hand, not a retry: the view says queued until it starts
    job.save_meta()
    try:
        job.requeue()
    except InvalidJobOperation:
        return error(409, f"job {job_id} is not in the failed registry", "conflict")
    return _accepted(job)


@bp.get("/sync/conflicts")
def list_conflicts() -> Response:
    status = request.args.get("status", "open")
    if status not in ("open", "all", "resolved-keep-local", "resolved-keep-upstream"):
        return error(400, "status must be open, all, resolved-keep-local or resolved-keep-upstream", "value", "?status")
    found = conflicts.list_all(current_app.extensions["store"], request.args.get("upstream"), None if status == "all" else status)
    return _json({"total": len(found), "conflicts": found})


@bp.post("/sync/conflicts/<cid>/resolve")
def resolve_conflict(cid: str) -> Response:
    body = json_body()
    if not isinstance(body, dict) or body.get("keep") not in conflicts.KEEP or set(body) - {"keep"}:
        raise InputError([Issue("keep", 'the body must be {"keep": "local"} or {"keep": "upstream"}', "value")])
    entry = conflicts.get(current_app.extensions["store"], cid) if JOB_ID.match(cid) else None
    if entry is None:
        return error(404, f"no conflict {cid!r}", "not-found")
    if entry["status"] != "open":
        return error(409, f"conflict {cid} is already {entry['status']}", "conflict")
    rtype, rid = entry["resource"].split("/", 1)
    conflicts.resolve(current_app.extensions["store"], entry, body["keep"], reads.current(current_app.extensions["store"], rtype, rid))
    patient = f"Patient/{entry['patient']}" if entry.get("patient") else None
    # The next push of the patient carries the chosen side over (see workers/conflicts.py).
    return _accepted(queues.enqueue(_client(), jobs.push, entry["upstream"], patient, is_async=not _inline(),
                                    description=f"push to {entry['upstream']} (resolve {cid})", request_id=g.get("request_id")))


def describe(job: Job) -> dict:
    """The public view of a job: state, progress, result summary or failure reason."""
    rq_status = job.get_status()
    state = RQ_STATES.get(rq_status, JobState.QUEUED)
    # RQ never marks a failed attempt FAILED while retries are left: it schedules the retry at once and records
    # no failure Result, so the reason comes from the worker's note (workers.queues.note_failed_attempt).
    last_error = job.meta.get("lastError")
    if state is JobState.QUEUED and last_error:
        state = JobState.RETRYING
    args = list(job.args) + [None, None]
    body = {"id": job.id, "status": state.value, "kind": (job.func_name or "").rsplit(".", 1)[-1], "upstream": args[0],
            "patient": args[1], "progress": job.meta.get("progress", {"done": 0, "total": None}),
            "retriesLeft": job.retries_left, "enqueuedAt": _iso(job.enqueued_at), "startedAt": _iso(job.started_at),
            "endedAt": _iso(job.ended_at)}
    if job.meta.get("pull"):
        # How a pull went: {mode: bulk-export | search, fallback?: why not by export} (workers/bulk_pull.py)
        body["pull"] = {**job.meta["pull"], **({"export": job.meta["export"]} if job.meta.get("export") else {})}
    if state is JobState.FINISHED:
        body["result"] = job.return_value()
    if state is JobState.FAILED:
        body["error"] = _reason(job) or last_error
    elif state is JobState.RETRYING:
        body["error"] = last_error
        if rq_status == JobStatus.SCHEDULED:
            body["retryAt"] = _iso(_scheduled_at(job))
    return body


def _scheduled_at(job: Job):
    try:
        return ScheduledJobRegistry(job.origin, connection=job.connection).get_scheduled_time(job)
    except NoSuchJobError:
        return None  # moved to the queue between the two reads


def _sync_request() -> tuple[str, str | None]:
    """(upstream name, patient reference or None) from an optional JSON body."""
    body = json_body() if request.get_data(cache=True) else {}
    if not isinstance(body, dict):
        raise InputError([Issue("$", "the body must be a JSON object {upstream?, patient?}", "structure")])
    issues = [Issue(k, f"unknown field {k!r} (allowed: upstream, patient)", "structure") for k in body if k not in ("upstream", "patient")]
    upstream, patient = body.get("upstream"), body.get("patient")
    if upstream is not None and not isinstance(upstream, str):
        issues.append(Issue("upstream", "upstream must be a string", "structure"))
    if patient is not None and (not isinstance(patient, str) or not PATIENT_REF.match(patient)):
        issues.append(Issue("patient", "patient must be a reference 'Patient/<id>'", "value"))
    if issues:
        raise InputError(issues)
    try:
        return resolve(upstream).name, patient
    except UnknownUpstream as exc:
        raise InputError([Issue("upstream", str(exc), "not-found")]) from None
    except ConfigError as exc:
        raise InputError([Issue("$", f"sync is misconfigured: {exc}", "exception")], 503) from None


def _job(job_id: str) -> Job:
    if not JOB_ID.match(job_id):
        raise InputError([Issue("id", f"no job {job_id!r}", "not-found")], 404)
    try:
        job = Job.fetch(job_id, connection=_client())
    except NoSuchJobError:
        raise InputError([Issue("id", f"no job {job_id!r}", "not-found")], 404) from None
    if job.origin != queues.QUEUE_NAME:
        raise InputError([Issue("id", f"no job {job_id!r}", "not-found")], 404)
    return job


def _accepted(job: Job) -> Response:
    """202 with the job id and its status URL (also the FHIR async pattern's Content-Location)."""
    url = f"/jobs/{job.id}"
    status = RQ_STATES.get(job.get_status(), JobState.QUEUED).value
    return _json({"id": job.id, "status": status, "statusUrl": url}, 202, {"Content-Location": url, "Location": url})


def _reason(job: Job) -> str | None:
    result = job.latest_result()
    text = (result.exc_string if result else None) or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=str), status=status, mimetype="application/json", headers=headers)
