"""Audit: every read or write of patient data, and every sync request, recorded as a FHIR AuditEvent in a
Redis stream (AOF-persisted with the rest of the store) and readable at GET /AuditEvent (admin scope)."""
from __future__ import annotations

import datetime as dt
import json
import logging

import redis
from flask import Blueprint, Flask, Response, current_app, g, request

from service.outcome import fhir_response
from store.audit_log import STREAM, append
from service.paging import page_params

log = logging.getLogger("gateway.audit")
REQUEST_ID_SYSTEM = "https://oncology-gateway.example.org/fhir/NamingSystem/request-id"
ACTIONS = {"GET": "R", "POST": "C", "PUT": "U", "DELETE": "D"}
bp = Blueprint("audit", __name__)


def _interaction(path: str, method: str) -> str:
    if method == "POST" and path in ("/", "/Bundle"):
        return "transaction"
    if "$" in path or path.startswith(("/sync", "/cases")):
        return "operation"
    parts = [p for p in path.split("/") if p]
    if method == "GET":
        return "read" if len(parts) == 2 else ("vread" if "_history" in parts else "search-type")
    return {"PUT": "update", "DELETE": "delete"}.get(method, "create")


def _patients() -> list[str]:
    """Patients the request touched: set by handlers in g.audit_patients, else read from the URL."""
    found = set(getattr(g, "audit_patients", set()))
    parts = [p for p in request.path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "Patient":
        found.add(parts[1])
    for name in ("subject", "patient"):
        value = request.args.get(name)
        if value:
            found.add(value.split("/")[-1])
    return sorted(found)


def audit_event(status: int) -> dict:
    principal = getattr(g, "principal", None)
    entities = [{"what": {"reference": f"Patient/{pid}"}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                                                   "code": "1", "display": "Person"}} for pid in _patients()]
    entities.append({"what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": g.get("request_id", "")}},
                     "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
                     "description": f"{request.method} {request.url_rule.rule if request.url_rule else request.path}"})
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": _interaction(request.path, request.method)}],
        "action": "E" if _interaction(request.path, request.method) == "operation" else ACTIONS.get(request.method, "E"),
        "recorded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": "0" if status < 400 else ("4" if status < 500 else "8"),
        "agent": [{"who": {"identifier": {"value": principal.client if principal else "anonymous"}}, "requestor": True}],
        "source": {"observer": {"display": "oncology-gateway"}},
        "entity": entities,
    }


def _touches_patient_data(path: str) -> bool:
    from service.scopes import is_public

    return not is_public(path) and not path.startswith(("/AuditEvent", "/cases/schema", "/docs", "/rq", "/metrics"))


def install(app: Flask) -> None:
    @app.after_request
    def record(response: Response) -> Response:
        if _touches_patient_data(request.path) and response.status_code not in (401,):
            try:
                append(current_app.extensions["redis"], audit_event(response.status_code))
            except redis.RedisError:
                log.error("audit event could not be recorded")
        return response


@bp.get("/AuditEvent")
def list_events() -> Response:
    """Newest first; _count and _offset page; patient=<id> filters."""
    params = request.args.to_dict(flat=False)
    count, offset = page_params(params)
    patient = request.args.get("patient")
    events = []
    for _, fields in current_app.extensions["redis"].xrevrange(STREAM, count=100000):
        event = json.loads(fields[b"event"])
        if patient and f"Patient/{patient.split('/')[-1]}" not in {e["what"].get("reference") for e in event["entity"]}:
            continue
        events.append(event)
    page = events[offset:offset + count]
    return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": len(events),
                          "entry": [{"resource": e, "search": {"mode": "match"}} for e in page]})
