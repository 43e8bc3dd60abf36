"""The audit trail: AuditEvents appended to an append-only table (never updated or deleted by the service),
by the gateway for requests and by the workers for sync jobs; indexed by the patients each event names."""
from __future__ import annotations

import json

from sqlalchemy import Engine, func, insert, select

from store import db
from store.schema import audit_event_patients, audit_events
from store.writes import now_instant, now_ms

DCM = "http://dicom.nema.org/resources/ontology/DCM"


def patients_named(event: dict) -> list[str]:
    """The patient ids an AuditEvent's entities name (entity.what = Patient/<id>)."""
    found = []
    for entity in event.get("entity", []):
        ref = (entity.get("what") or {}).get("reference") or ""
        if ref.startswith("Patient/") and ref[8:] not in found:
            found.append(ref[8:])
    return found


def records_a_read(event: dict) -> bool:
    """True for the event of a GET or HEAD request (service/audit.py names the request in an entity description)."""
    return any(str(e.get("description", "")).startswith(("GET ", "HEAD ")) for e in event.get("entity", []))


def append(engine: Engine, event: dict) -> None:
    """Append one event. The events of reads commit without waiting for the disk flush (store.db.write
    durable=False): one fsync per read serialised every SQLite reader on the write lock (bench/gateway.py);
    events of writes and sync jobs stay fully durable, like the clinical data they describe."""
    def work(conn) -> None:
        seq = conn.execute(insert(audit_events).values(recorded=now_ms(), body=json.dumps(event, ensure_ascii=False))
                           .returning(audit_events.c.seq)).scalar_one()
        patients = patients_named(event)
        if patients:
            conn.execute(insert(audit_event_patients), [{"event_seq": seq, "patient_id": p} for p in patients])

    db.write(engine, work, durable=not records_a_read(event))


def events(engine: Engine, patient: str | None, count: int, offset: int) -> tuple[list[dict], int]:
    """(newest-first page, total) of the events, or of those naming one patient."""
    if patient:
        base = select(audit_events.c.seq, audit_events.c.body).join(
            audit_event_patients, audit_event_patients.c.event_seq == audit_events.c.seq).where(
            audit_event_patients.c.patient_id == patient)
    else:
        base = select(audit_events.c.seq, audit_events.c.body)
    with db.reading(engine) as conn:
        total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
        rows = conn.execute(base.order_by(audit_events.c.seq.desc()).limit(count).offset(offset))
        return [json.loads(r.body) for r in rows], total


def sync_event(kind: str, upstream: str, patients: list[str], ok: bool, job_id: str, request_id: str | None) -> dict:
    """A sync job as an AuditEvent: DICOM Export (push) or Import (pull), by the worker, per patient touched."""
    code, display = ("110106", "Export") if kind == "push" else ("110107", "Import")
    entities: list[dict] = [{"what": {"reference": f"Patient/{pid}"}} for pid in patients]
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
