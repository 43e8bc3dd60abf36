"""The audit trail: AuditEvents appended to one Redis stream (persisted with the store), by the gateway for
requests and by the workers for sync jobs."""
from __future__ import annotations

import datetime as dt
import json

import redis

STREAM = "audit:events"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def now_instant() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append(client: redis.Redis, event: dict) -> None:
    client.xadd(STREAM, {"event": json.dumps(event)})


def sync_event(kind: str, upstream: str, patients: list[str], ok: bool, job_id: str, request_id: str | None) -> dict:
    """A sync job as an AuditEvent: DICOM Export (push) or Import (pull), by the worker, per patient touched."""
    code, display = ("110106", "Export") if kind == "push" else ("110107", "Import")
    entities = [{"what": {"reference": f"Patient/{pid}"}} for pid in patients]
    entities.append({"what": {"identifier": {"system": "urn:oncology-gateway:job", "value": job_id}}, "description": f"{kind} job"})
    if request_id:
        entities.append({"what": {"identifier": {"system": "https://oncology-gateway.example.org/fhir/NamingSystem/request-id",
                                                 "value": request_id}}, "description": "request"})
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": code, "display": display},
        "action": "E",
        "recorded": now_instant(),
        "outcome": "0" if ok else "4",
        "agent": [{"who": {"display": "oncology-gateway sync worker"}, "requestor": False},
                  {"who": {"display": f"upstream {upstream}"}, "requestor": False}],
        "source": {"observer": {"display": "oncology-gateway worker"}},
        "entity": entities,
    }
