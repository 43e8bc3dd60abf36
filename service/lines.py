"""Treatment-line summaries: per patient (JSON or FHIR EpisodeOfCare), and cohort views for registries."""
from __future__ import annotations

import json
import logging

import redis

from flask import Blueprint, Flask, Response, current_app, g, request

from mappings.errors import InputError, Issue
from service.outcome import FHIR_JSON, error, fhir_response
from service.paging import searchset
from store import reads
from summaries.line_summary import cached_summary
from treatment_lines.aggregate import aggregate
from treatment_lines.fhir_output import lines_to_fhir
from workers.queues import enqueue_summaries

bp = Blueprint("lines", __name__)
log = logging.getLogger("gateway.lines")


def _client():
    return current_app.extensions["redis"]


def _engine():
    return current_app.extensions["store"]


def summary(pid: str) -> tuple[bytes, str, bool]:
    return cached_summary(_engine(), _client(), pid)


@bp.get("/Patient/<pid>/treatment-lines")
def patient_lines(pid: str) -> Response:
    if not reads.patient_exists(_engine(), pid)[0]:
        return error(404, f"Patient/{pid} is not known", "not-found")
    g.audit_patients = set(g.get("audit_patients", set())) | {pid}
    body, tag, hit = summary(pid)
    wanted = request.args.get("_format") or request.accept_mimetypes.best_match(["application/json", FHIR_JSON], default="application/json")
    if wanted in (FHIR_JSON, "fhir"):
        episodes = lines_to_fhir(json.loads(body), f"Patient/{pid}")
        return fhir_response(searchset(episodes, {"_count": [str(max(1, len(episodes)))]}, f"/Patient/{pid}/treatment-lines"),
                             headers={"ETag": tag})
    return Response(body, mimetype="application/json", headers={"ETag": tag, "X-Cache": "hit" if hit else "miss"})


def _since_ms() -> int | None:
    since = request.args.get("_since")
    if not since:
        return None
    try:
        return reads.instant_ms(since)
    except ValueError:
        raise InputError([Issue("?_since", f"{since!r} is not a FHIR instant", "value")]) from None


@bp.get("/treatment-lines")
def cohort_lines() -> Response:
    """NDJSON: one summary per patient changed since _since (every patient without it)."""
    engine, client, since = _engine(), _client(), _since_ms()
    patients = [pid for pid in reads.patients_changed_since(engine, since) if reads.patient_exists(engine, pid)[0]]
    g.audit_patients = set(g.get("audit_patients", set())) | set(patients)

    def lines():
        for pid in patients:
            yield cached_summary(engine, client, pid)[0].decode("utf-8") + "\n"

    return Response(lines(), mimetype="application/x-ndjson")


@bp.get("/treatment-lines/aggregate")
def cohort_aggregate() -> Response:
    engine, since = _engine(), _since_ms()
    summaries = [json.loads(summary(pid)[0]) for pid in reads.patients_changed_since(engine, since)
                 if reads.patient_exists(engine, pid)[0]]
    return Response(json.dumps(aggregate(summaries)), mimetype="application/json")


def enqueue_after_write(app: Flask) -> None:
    """After every write, queue the recomputation of the written patients' lines (inline in in-process mode)."""

    def hook(outcomes) -> None:
        patients = {p for o in outcomes for p in o.patients}
        if not patients:
            return
        try:
            enqueue_summaries(_client(), patients, current_app.extensions["redis_mode"] != "in-process", g.get("request_id"))
        except redis.RedisError as exc:
            # The write is committed; the summary is then computed on its first read instead.
            log.warning("treatment-line recomputation not queued", extra={"error": type(exc).__name__})

    app.extensions["after_write"] = hook
