"""Case data endpoints: map a case to FHIR, validate one, publish the format's JSON Schema."""
from __future__ import annotations

import json

from flask import Blueprint, Response, request

from mappings.case_bundle import case_to_bundle
from mappings.case_validation import check_case, schema
from mappings.timeline import Timeline
from service.bundles import process_bundle
from service.outcome import fhir_response
from service.request_body import json_body

bp = Blueprint("cases", __name__)


@bp.post("/cases")
def map_case() -> Response:
    """Case JSON in, the validated transaction Bundle out; with ?store=true it is also applied to the store
    and the answer is the transaction-response."""
    bundle = case_to_bundle(json_body())
    if request.args.get("store", "false").lower() in ("true", "1", "yes"):
        return process_bundle(bundle)
    return fhir_response(bundle)


@bp.post("/cases/$validate")
def validate_case() -> Response:
    """Every problem of a case document, without mapping it: an OperationOutcome, 200 when valid."""
    case = json_body()
    check_case(case)
    Timeline(case)
    return fhir_response({"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": "the case document is valid"}]})


@bp.get("/cases/schema")
def case_schema() -> Response:
    return Response(json.dumps(schema(), indent=2), mimetype="application/schema+json")
