"""Case data endpoints: map a case to FHIR, validate one, publish the format's JSON Schema."""
from __future__ import annotations

import json

from flask import Blueprint, Response, g, request

from mappings.case_bundle import case_to_bundle
from mappings.case_validation import check_case, schema
from mappings.timeline import Timeline
from service.bundles import process_bundle
from service.case_identity import guard_patient
from service.outcome import fhir_response
from service.request_body import json_body

bp = Blueprint("cases", __name__)


@bp.post("/cases")
def map_case() -> Response:
    """Case JSON in, the validated transaction Bundle out; with ?store=true it is also applied to the store
    and the answer is the transaction-response."""
    case = json_body()
    if request.args.get("store", "false").lower() in ("true", "1", "yes"):
        # Stored under the submitting client's namespace (docs/security.md): another source's case with the same
        # caseId is another case, and this source's earlier case keeps its patient (service/case_identity.py).
        bundle = case_to_bundle(case, source=g.principal.client)
        guard_patient(bundle)
        return process_bundle(bundle)
    return fhir_response(case_to_bundle(case))


@bp.post("/cases/$validate")
def validate_case() -> Response:
    """Every problem of a case document, without mapping it: an OperationOutcome, 200 when valid."""
    Timeline(check_case(json_body()))
    return fhir_response({"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": "the case document is valid"}]})


@bp.get("/cases/schema")
def case_schema() -> Response:
    return Response(json.dumps(schema(), indent=2), mimetype="application/schema+json")
