"""Bundle exchange for EHRs: POST / and POST /Bundle accept transaction, batch and collection Bundles."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g

from mappings.errors import InputError
from service import fhir_http
from service.audit import WriteEvent
from service.outcome import fhir_response, operation_outcome, outcome_response
from service.request_body import json_body
from store.bundle_plan import plan_bundle
from store.writes import EntryOutcome, TransactionFailed, apply_batch, apply_entries

bp = Blueprint("bundles", __name__)


@bp.post("/Bundle")
@bp.post("/")
def post_bundle() -> Response:
    fhir_http.check_format()
    return process_bundle(json_body(), from_json=True)


def process_bundle(bundle: object, from_json: bool = False) -> Response:
    """Validate every entry, then apply: transaction/collection all-or-nothing, batch entry by entry. from_json:
    the bundle is a parsed request body (store.bundle_plan.plan_bundle)."""
    btype, planned = plan_bundle(bundle, current_app.config["MAX_BUNDLE_ENTRIES"], from_json)
    engine, policy = current_app.extensions["store"], current_app.config["REFERENCE_POLICY"]
    # Both answers below are 200 once the write committed; the event goes into the write's transaction.
    event = WriteEvent(lambda _outcomes: 200)
    if btype == "batch":
        outcomes = apply_batch(engine, planned, policy, audit=event)
        event.committed()
        _after_write(outcomes)
        return fhir_response(_response_bundle("batch-response", outcomes))
    issues = [i for p in planned for i in p.issues]
    if issues:
        raise InputError(issues, 403 if all(i.code == "forbidden" for i in issues) else 400)
    try:
        outcomes = apply_entries(engine, planned, policy=policy, audit=event)
    except TransactionFailed as exc:
        return outcome_response(exc.issues, exc.status)
    event.committed()
    _after_write(outcomes)
    return fhir_response(_response_bundle("transaction-response", outcomes))


def _response_bundle(btype: str, outcomes: list[EntryOutcome]) -> dict:
    wanted = fhir_http.prefer().get("return")  # once per request: it was parsed again for every entry
    entries = []
    for outcome in outcomes:
        response: dict = {"status": outcome.status}
        for key, value in (("location", outcome.location), ("etag", outcome.etag), ("lastModified", outcome.last_modified)):
            if value:
                response[key] = value
        if outcome.issues:
            response["outcome"] = operation_outcome(outcome.issues)
        entry: dict = {"response": response}
        if outcome.location:
            entry["fullUrl"] = outcome.location.split("/_history")[0]
        if outcome.body is not None:
            entry["resource"] = outcome.body
        elif outcome.resource is not None and wanted == "representation":
            entry["resource"] = outcome.resource
        entries.append(entry)
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def _after_write(outcomes: list[EntryOutcome]) -> None:
    """Names the patients written for the audit trail, then runs the after-write hook (treatment lines)."""
    patients = {p for o in outcomes for p in (o.patients | {o.patient})} - {None}
    g.audit_patients = set(g.get("audit_patients", set())) | patients
    hook = current_app.extensions.get("after_write")
    if hook:
        hook(outcomes)
