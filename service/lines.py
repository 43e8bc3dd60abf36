"""Treatment-line summaries: per patient (JSON or FHIR EpisodeOfCare), and cohort views for registries."""
from __future__ import annotations

import json

from flask import Blueprint, Flask, Response, current_app, g, request

from mappings.errors import CaseError, Issue
from service.outcome import FHIR_JSON, error, fhir_response
from service.paging import searchset
from store import reads
from store.references import patient_of
from treatment_lines.aggregate import aggregate
from treatment_lines.fhir_output import lines_to_fhir
from workers.queues import enqueue_summaries
from workers.summaries import cached_summary

bp = Blueprint("lines", __name__)


def _client():
    return current_app.extensions["redis"]


@bp.get("/Patient/<pid>/treatment-lines")
def patient_lines(pid: str) -> Response:
    if reads.read(_client(), "Patient", pid) is None:
        return error(404, f"Patient/{pid} is not known", "not-found")
    body, tag, hit = cached_summary(_client(), pid)
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
        raise CaseError([Issue("?_since", f"{since!r} is not a FHIR instant", "value")]) from None


@bp.get("/treatment-lines")
def cohort_lines() -> Response:
    """NDJSON: one summary per patient changed since _since (every patient without it)."""
    client, since = _client(), _since_ms()
    patients = reads.patients_changed_since(client, since)

    def lines():
        for pid in patients:
            if reads.read(client, "Patient", pid) is not None:
                yield cached_summary(client, pid)[0].decode("utf-8") + "\n"

    return Response(lines(), mimetype="application/x-ndjson")


@bp.get("/treatment-lines/aggregate")
def cohort_aggregate() -> Response:
    client, since = _client(), _since_ms()
    summaries = [json.loads(cached_summary(client, pid)[0]) for pid in reads.patients_changed_since(client, since)
                 if reads.read(client, "Patient", pid) is not None]
    return Response(json.dumps(aggregate(summaries)), mimetype="application/json")


def enqueue_after_write(app: Flask) -> None:
    """After every write, queue the recomputation of the written patients' lines (inline in in-process mode)."""

    def hook(outcomes) -> None:
        patients = {patient_of(o.resource) for o in outcomes if o.resource is not None} - {None}
        if patients:
            enqueue_summaries(_client(), patients, current_app.extensions["redis_mode"] != "in-process", g.get("request_id"))

    app.extensions["after_write"] = hook
