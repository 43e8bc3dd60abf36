"""Bundle exchange for EHRs: POST /Bundle and POST / accept transaction, batch and collection Bundles."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g

from mappings.errors import CaseError
from service.outcome import fhir_response, operation_outcome, outcome_response
from service.request_body import json_body
from store.bundle_plan import plan_bundle
from store.references import patient_of
from store.writes import EntryOutcome, TransactionFailed, apply_entries

bp = Blueprint("bundles", __name__)
STATUS_TEXT = {400: "400 Bad Request", 404: "404 Not Found", 409: "409 Conflict", 412: "412 Precondition Failed"}


@bp.post("/Bundle")
@bp.post("/")
def post_bundle() -> Response:
    return process_bundle(json_body())


def process_bundle(bundle: object) -> Response:
    """Validate every entry, then apply: transaction/collection all-or-nothing, batch entry by entry."""
    btype, planned = plan_bundle(bundle, current_app.config["MAX_BUNDLE_ENTRIES"])
    client = current_app.extensions["redis"]
    if btype == "batch":
        return fhir_response(_batch(client, planned))
    issues = [i for p in planned for i in p.issues]
    if issues:
        raise CaseError(issues)
    try:
        outcomes = apply_entries(client, planned)
    except TransactionFailed as exc:
        return outcome_response(exc.issues, exc.status)
    _after_write(outcomes)
    return fhir_response(_response_bundle("transaction-response", outcomes))


def _batch(client, planned) -> dict:
    outcomes, known = [], {}
    for p in planned:
        if p.issues:
            outcomes.append(EntryOutcome("400 Bad Request", issues=p.issues))
            continue
        try:
            (outcome,) = apply_entries(client, [p], known)
        except TransactionFailed as exc:
            outcome = EntryOutcome(STATUS_TEXT.get(exc.status, f"{exc.status}"), issues=exc.issues)
        if outcome.location and p.full_url:
            known[p.full_url] = outcome.location.split("/_history")[0]
        outcomes.append(outcome)
    _after_write(outcomes)
    return _response_bundle("batch-response", outcomes)


def _response_bundle(btype: str, outcomes: list[EntryOutcome]) -> dict:
    entries = []
    for outcome in outcomes:
        response = {"status": outcome.status}
        for key, value in (("location", outcome.location), ("etag", outcome.etag), ("lastModified", outcome.last_modified)):
            if value:
                response[key] = value
        if outcome.issues:
            response["outcome"] = operation_outcome(outcome.issues)
        entry = {"response": response}
        if outcome.location:
            entry["fullUrl"] = outcome.location.split("/_history")[0]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def _after_write(outcomes: list[EntryOutcome]) -> None:
    """Names the patients written for the audit trail, then runs the after-write hook (treatment lines)."""
    patients = {patient_of(o.resource) for o in outcomes if o.resource} - {None}
    g.audit_patients = set(g.get("audit_patients", set())) | patients
    hook = current_app.extensions.get("after_write")
    if hook:
        hook(outcomes)
