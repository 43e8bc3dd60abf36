"""Patient views: $everything (cached, ETag/304) and the normalised procedure history for registries."""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, request

from registry.procedure_history import procedure_history, public, to_csv
from service.metrics import record_cache
from service.outcome import FHIR_JSON, error, fhir_response
from service.paging import base_url, searchset
from store import patient_cache, reads

bp = Blueprint("patients", __name__)
# Order of types in $everything: the patient first, then the clinical record, then the rest alphabetically.
TYPE_ORDER = {"Patient": 0, "Condition": 1, "Procedure": 2, "MedicationStatement": 3, "MedicationRequest": 4,
              "MedicationAdministration": 5, "Observation": 6, "Provenance": 9}


def _client():
    return current_app.extensions["redis"]


def _patient_exists(pid: str) -> bool:
    return reads.read(_client(), "Patient", pid) is not None


def _everything_body(pid: str, params: dict[str, list[str]]) -> bytes:
    since = reads.instant_ms(params["_since"][-1]) if params.get("_since") else None
    resources = reads.compartment(_client(), pid, since)
    wanted = {t for v in params.get("_type", []) for t in v.split(",") if t}
    if wanted:
        resources = [r for r in resources if r["resourceType"] in wanted]
    resources.sort(key=lambda r: (TYPE_ORDER.get(r["resourceType"], 8), r["resourceType"], r["id"]))
    bundle = searchset(resources, params, f"/Patient/{pid}/$everything")
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@bp.get("/Patient/<pid>/$everything")
def everything(pid: str) -> Response:
    params = request.args.to_dict(flat=False)
    _check_everything_params(params)
    variant = patient_cache.variant_key("everything", base_url(), request.query_string.decode())
    # One Redis round trip for existence, version and cached bytes (they were three).
    exists, version, stored = patient_cache.lookup(_client(), pid, variant)
    if not exists:
        return error(404, f"Patient/{pid} is not known", "not-found")
    if request.if_none_match and patient_cache.etag(pid, version, variant) in _etags(request.headers["If-None-Match"]):
        return Response(status=304, headers={"ETag": patient_cache.etag(pid, version, variant)})
    body, tag, hit = patient_cache.cached_view(_client(), pid, variant, lambda: _everything_body(pid, params), (version, stored))
    record_cache(hit)
    return Response(body, mimetype=FHIR_JSON, headers={"ETag": tag, "X-Cache": "hit" if hit else "miss"})


def _etags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",")]


def _check_everything_params(params: dict[str, list[str]]) -> None:
    from mappings.errors import CaseError, Issue
    from service.paging import page_params

    unknown = [k for k in params if k not in ("_since", "_type", "_count", "_offset")]
    issues = [Issue(f"?{k}", f"'{k}' is not supported by $everything (use _since, _type, _count)", "not-supported") for k in unknown]
    for value in params.get("_since", []):
        try:
            reads.instant_ms(value)
        except ValueError:
            issues.append(Issue("?_since", f"{value!r} is not a FHIR instant", "value"))
    if issues:
        raise CaseError(issues)
    page_params(params)


@bp.get("/Patient/<pid>/procedure-history")
def patient_procedure_history(pid: str) -> Response:
    if not _patient_exists(pid):
        return error(404, f"Patient/{pid} is not known", "not-found")
    resources = reads.compartment(_client(), pid)
    records = procedure_history(resources, f"Patient/{pid}")
    wanted = request.accept_mimetypes.best_match(["application/json", "text/csv", FHIR_JSON], default="application/json")
    fmt = request.args.get("_format") or wanted
    if fmt in ("text/csv", "csv"):
        return Response(to_csv(records), mimetype="text/csv")
    if fmt in (FHIR_JSON, "fhir", "json+fhir"):
        by_ref = {f"Procedure/{r['id']}": r for r in resources if r["resourceType"] == "Procedure"}
        ordered = [by_ref[r["procedure"]] for r in records]
        return fhir_response(searchset(ordered, {"_count": [str(max(1, len(ordered)))]}, f"/Patient/{pid}/procedure-history"))
    return Response(json.dumps({"patient": f"Patient/{pid}", "procedures": [public(r) for r in records]}, ensure_ascii=False),
                    mimetype="application/json")


@bp.get("/procedure-history")
def registry_pull() -> Response:
    """NDJSON, one procedure per line, for every patient changed since _since (all patients without it)."""
    since = request.args.get("_since")
    try:
        since_ms = reads.instant_ms(since) if since else None
    except ValueError:
        return error(400, f"{since!r} is not a FHIR instant", "value", "?_since")
    client = current_app._get_current_object().extensions["redis"]
    patients = reads.patients_changed_since(client, since_ms)

    def lines():
        for pid in patients:
            for r in procedure_history(reads.compartment(client, pid), f"Patient/{pid}"):
                yield json.dumps(public(r), ensure_ascii=False) + "\n"

    return Response(lines(), mimetype="application/x-ndjson")
