"""Audit: every request behind authentication, whatever its outcome (401, 403, 429, 4xx, 5xx included), recorded
as a FHIR AuditEvent in the audit sink and readable at GET /AuditEvent (admin scope). Only the operator views'
successful reads (/rq pages, /metrics scrapes, /cases/schema), which carry no patient data, go unrecorded."""
from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Request, Response, current_app, g, request
from flask.ctx import _AppCtxGlobals
from flask.globals import app_ctx, request_ctx
from sqlalchemy import Engine
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
READS = ("GET", "HEAD")  # their events are queued and written in batches (store/audit_log.py, docs/security.md)
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
    found = set(getattr(app_g, "audit_patients", ()))
    if "Patient/" in path:  # the split only when the path may name one
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


# What one event says, gathered while the request is current: (recorded ms, status, method, entity description,
# client, address, request id, patients, interaction, action). A read's event is queued as this tuple and turned
# into its FHIR JSON (event_json) by the audit flush thread; every other event is built as a dict (event_of).
Fields = tuple[int, int, str, str, str, str, str, list[str], str, str]


def _fields(req: Request, app_g: _AppCtxGlobals, status: int) -> Fields:
    path, method, rule = req.path, req.method, req.url_rule
    principal = getattr(app_g, "principal", None)
    interaction = _interaction(path, method)
    return (time.time_ns() // 1_000_000, status, method, f"{method} {rule.rule if rule else path}",
            principal.client if principal else "anonymous", client_address(req), app_g.get("request_id", ""),
            _patients(path, app_g), interaction, "E" if interaction == "operation" else ACTIONS.get(method, "E"))


def _outcome(status: int) -> str:
    return "0" if status < 400 else ("4" if status < 500 else "8")


ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"}
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
OBSERVER = {"observer": {"display": "oncology-gateway"}}


def event_of(fields: Fields) -> dict:
    """The AuditEvent of a request, as a dict."""
    ms, status, method, description, client, address, request_id, patients, interaction, action = fields
    entities: list[dict] = [{"what": {"reference": f"Patient/{pid}"}, "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"}}
                            for pid in patients]
    entities.append({"what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": request_id}},
                     "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                     "description": description})
    return {
        "resourceType": "AuditEvent",
        "type": dict(EVENT_TYPE),
        "subtype": [{"system": INTERACTION_SYSTEM, "code": interaction}],
        "action": action,
        "recorded": instant_of(ms),
        "outcome": _outcome(status),
        "outcomeDesc": f"HTTP {status}",
        # network.type 2: IP Address (http://hl7.org/fhir/network-type); for 401s the address is all we know.
        "agent": [{"who": {"identifier": {"value": client}}, "requestor": True,
                   "network": {"address": address, "type": "2"}}],
        "source": {"observer": dict(OBSERVER["observer"])},
        "entity": entities,
    }


# event_json writes the same JSON text as json.dumps(event_of(fields)) with compact separators, by joining these
# fixed pieces with the variable values (each encoded by the json module's own string encoder): building the dict
# and walking it in the encoder cost a cached read about a tenth of its CPU (bench/gateway.py, benchmark 2).
# tests/test_audit_read_events.py checks the two agree.
_text = json.encoder.encode_basestring  # json.dumps(value, ensure_ascii=False) for a str
_c = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
_HEAD = '{"resourceType":"AuditEvent","type":' + _c(EVENT_TYPE) + ',"subtype":[{"system":' + _text(INTERACTION_SYSTEM) + ',"code":'
_PERSON = '},"type":' + _c({"system": ENTITY_TYPE, "code": "1", "display": "Person"}) + '},'
_REQUEST = '{"what":{"identifier":{"system":' + _text(REQUEST_ID_SYSTEM) + ',"value":'
_SYSTEM_OBJECT = '}},"type":' + _c({"system": ENTITY_TYPE, "code": "2", "display": "System Object"}) + ',"description":'
_SOURCE = '"source":' + _c(OBSERVER)


def event_json(fields: Fields) -> str:
    """The AuditEvent of a request as JSON text (see _HEAD)."""
    ms, status, method, description, client, address, request_id, patients, interaction, action = fields
    persons = "".join(['{"what":{"reference":' + _text("Patient/" + pid) + _PERSON for pid in patients])
    return "".join((
        _HEAD, _text(interaction), '}],"action":', _text(action), ',"recorded":"', instant_of(ms),
        '","outcome":"', _outcome(status), '","outcomeDesc":"HTTP ', str(status),
        '","agent":[{"who":{"identifier":{"value":', _text(client), '}},"requestor":true,"network":{"address":',
        _text(address), ',"type":"2"}}],', _SOURCE, ',"entity":[', persons, _REQUEST, _text(request_id),
        _SYSTEM_OBJECT, _text(description), "}]}"))


def audit_event(status: int) -> dict:
    """The current request's AuditEvent with this status."""
    return event_of(_fields(request_ctx.request, app_ctx.g, status))


# Successful reads of these carry no patient data and are polled (the dashboard refreshes every few seconds).
UNRECORDED_READS = ("/cases/schema", "/rq", "/metrics")


def _recorded(path: str, method: str, status: int) -> bool:
    if is_public(path):
        return False
    return not (status < 400 and method in ("GET", "HEAD") and path.startswith(UNRECORDED_READS))


def record_event(event: dict, engine: Engine | None = None) -> None:
    """An event to the audit sink (every event reaches it through _to_sink, here or in record_read)."""
    _to_sink(lambda store: audit_log.append(store, event), engine)


def record_read(fields: Fields, engine: Engine) -> None:
    """The same for a successful read's event, queued as its fields: the flush thread writes its JSON (event_json)."""
    _to_sink(lambda store: audit_log.append_read(store, fields[0], fields[7], event_json, fields), engine)


def _to_sink(append: Callable[[Engine], None], engine: Engine | None) -> None:
    """The one place an event reaches the audit sink."""
    try:
        append(engine if engine is not None else current_app.extensions["store"])
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


def record(app: Flask, req: Request, app_g: _AppCtxGlobals, response: Response) -> None:
    """After every handler (service/__init__.py): the request's event to the sink. A read's event is queued as
    its fields (audit_log.append_read), turned into JSON by the flush thread; a flood of 401/403/429 becomes one
    aggregate row per caller and window (service/audit_refusals.py)."""
    status = response.status_code
    if app_g.get("audit_recorded") == status:
        return  # recorded in the write's own transaction (WriteEvent)
    method = req.method
    if not _recorded(req.path, method, status):
        return
    fields = _fields(req, app_g, status)
    engine = app.extensions["store"]
    if method in READS and status not in audit_refusals.REFUSED:
        record_read(fields, engine)
        return
    event = event_of(fields)
    if not audit_refusals.absorbed(event, status, record_event):
        record_event(event, engine)


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
