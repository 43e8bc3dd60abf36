"""Audit: every request behind authentication, whatever its outcome (401, 403, 429, 4xx, 5xx included), recorded
as a FHIR AuditEvent in the audit sink and readable at GET /AuditEvent (admin scope). Only the operator views'
successful reads (/rq pages, /metrics scrapes, /cases/schema), which carry no patient data, go unrecorded."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.ctx import _AppCtxGlobals
from flask.globals import app_ctx, request_ctx
from sqlalchemy.exc import DBAPIError

from mappings.errors import InputError, Issue
from service import audit_refusals
from service.outcome import fhir_response
from service.paging import page_params
from service.rate_limit import client_address
from service.scopes import is_public
from store import audit_log
from store.db import DatabaseUnavailable

if TYPE_CHECKING:
    from store.writes import EntryOutcome

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


def _patients(path: str, app_g: _AppCtxGlobals) -> list[str]:
    """Patients the request touched: those of the resources the handlers read, wrote or returned
    (g.audit_patients), and the patient a /Patient/<id>/... path names. Never the query string: a read of
    Observation/1?patient=SOMEONE-ELSE must record Observation/1's patient, not the one the client typed."""
    found = set(getattr(app_g, "audit_patients", set()))
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "Patient" and not parts[1].startswith(("_", "$")):
        found.add(parts[1])
    return sorted(found)


_second: tuple[int, str] = (-1, "")  # (epoch second, its date and time of day as an instant spells them)


def instant_of(ms: int) -> str:
    """mappings.fhir_vocabulary.instant(ms) (UTC, milliseconds, "Z"), with the date and time of day formatted
    once per second instead of through a datetime per event (tests/test_security.py checks the two agree)."""
    global _second
    seconds, millis = divmod(ms, 1000)
    second = _second
    if second[0] != seconds:
        second = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{second[1]}.{millis:03d}Z"


def audit_event(status: int) -> dict:
    req, app_g = request_ctx.request, app_ctx.g  # one context lookup each for the whole event
    path, method, rule = req.path, req.method, req.url_rule
    principal = getattr(app_g, "principal", None)
    interaction = _interaction(path, method)
    entities: list[dict] = [{"what": {"reference": f"Patient/{pid}"}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                                                   "code": "1", "display": "Person"}} for pid in _patients(path, app_g)]
    entities.append({"what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": app_g.get("request_id", "")}},
                     "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
                     "description": f"{method} {rule.rule if rule else path}"})
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": "E" if interaction == "operation" else ACTIONS.get(method, "E"),
        "recorded": instant_of(time.time_ns() // 1_000_000),
        "outcome": "0" if status < 400 else ("4" if status < 500 else "8"),
        "outcomeDesc": f"HTTP {status}",
        # network.type 2: IP Address (http://hl7.org/fhir/network-type); for 401s the address is all we know.
        "agent": [{"who": {"identifier": {"value": principal.client if principal else "anonymous"}}, "requestor": True,
                   "network": {"address": client_address(), "type": "2"}}],
        "source": {"observer": {"display": "oncology-gateway"}},
        "entity": entities,
    }


# Successful reads of these carry no patient data and are polled (the dashboard refreshes every few seconds).
UNRECORDED_READS = ("/cases/schema", "/rq", "/metrics")


def _recorded(path: str, method: str, status: int) -> bool:
    if is_public(path):
        return False
    return not (status < 400 and method in ("GET", "HEAD") and path.startswith(UNRECORDED_READS))


def record_event(event: dict) -> None:
    """The one place an event reaches the audit sink."""
    try:
        audit_log.append(current_app.extensions["store"], event)
    except (DatabaseUnavailable, DBAPIError) as exc:
        # The request has been answered (and a write applied): a failing audit insert must not turn that answer
        # into a 500. The loss is logged; a database that is down gives DatabaseUnavailable here.
        log.error("audit event could not be recorded", extra={"error": type(exc).__name__})


class WriteEvent:
    """The AuditEvent of a write request, appended by store.writes inside the write's own transaction: one commit
    (one fsync on SQLite) for the clinical rows and their audit row, which is then exactly as durable as they are.
    status_of(outcomes) is the HTTP status the handler answers with those outcomes. After the commit the handler
    calls committed(); the after_request hook then records no second event for that status (a different final
    status, e.g. a 500 raised after the commit, is recorded as well: the trail shows both)."""

    def __init__(self, status_of: Callable[[list[EntryOutcome]], int]) -> None:
        self.status_of = status_of
        self.status: int | None = None
        self.before = set(g.get("audit_patients", set()))

    def __call__(self, outcomes: list[EntryOutcome]) -> dict | None:
        # Runs in the transaction, once per attempt (store.db.write retries a lost race): nothing from an attempt
        # that rolled back may stay behind, so the patients are set from scratch each time.
        status = self.status_of(outcomes)
        g.audit_patients = self.before | ({p for o in outcomes for p in (o.patients | {o.patient})} - {None})
        if not _recorded(request.path, request.method, status):
            self.status = None
            return None
        self.status = status
        return audit_event(status)

    def committed(self) -> None:
        if self.status is not None:
            g.audit_recorded = self.status


def install(app: Flask) -> None:
    @app.after_request
    def record(response: Response) -> Response:
        if g.get("audit_recorded") == response.status_code:
            return response  # recorded in the write's own transaction (WriteEvent)
        if _recorded(request.path, request.method, response.status_code):
            event = audit_event(response.status_code)
            # A flood of 401/403/429 becomes one aggregate row per caller and window (service/audit_refusals.py).
            if not audit_refusals.absorbed(event, response.status_code, record_event):
                record_event(event)
        return response


@bp.get("/AuditEvent")
def list_events() -> Response:
    """Newest first, from the append-only audit table; _count and _offset page; patient=<id> filters."""
    params = request.args.to_dict(flat=False)
    unknown = sorted(set(params) - {"patient", "_count", "_offset"})
    if unknown:
        raise InputError([Issue(f"AuditEvent?{unknown[0]}", f"'{unknown[0]}' is not supported here (patient, _count, _offset)",
                               "not-supported")])
    count, offset = page_params(params)
    patient = request.args.get("patient")
    audit_refusals.flush_all()  # refusals counted so far are on the trail the operator reads
    events, total = audit_log.events(current_app.extensions["store"], patient.split("/")[-1] if patient else None, count, offset)
    return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": total,
                          "entry": [{"resource": e, "search": {"mode": "match"}} for e in events]})
