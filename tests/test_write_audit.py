"""A write's AuditEvent is appended inside the write's own transaction (store.writes, service.audit.WriteEvent):
one commit for both, the event exactly as durable as the write, none for a write that rolled back, and still
exactly one event per request, with the status the client got. On SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from store import audit_log
from store.bundle_plan import plan_bundle
from store.schema import audit_events, resources
from store.writes import TransactionFailed, apply_entries


def _planned(*entries: dict):
    _, planned = plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}, len(entries))
    return planned


def _patient(pid: str) -> dict:
    return {"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}}


def _counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(resources)).scalar_one(),
                conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def _event(outcomes) -> dict:
    return {"resourceType": "AuditEvent", "outcome": "0",
            "entity": [{"what": {"reference": f"Patient/{o.patient}"}} for o in outcomes]}


def test_a_write_and_its_audit_row_commit_together(db_engine):
    apply_entries(db_engine, _planned(_patient("p-1"), _patient("p-2")), audit=_event)
    assert _counts(db_engine) == (2, 1)
    (event,), _ = audit_log.events(db_engine, "p-2", 10, 0)
    assert [e["what"]["reference"] for e in event["entity"]] == ["Patient/p-1", "Patient/p-2"]


def test_an_audit_row_that_cannot_be_built_rolls_the_write_back(db_engine):
    def broken(_outcomes) -> dict:
        raise RuntimeError("the event could not be built")

    with pytest.raises(RuntimeError):
        apply_entries(db_engine, _planned(_patient("p-1")), audit=broken)
    assert _counts(db_engine) == (0, 0)  # neither the clinical rows nor the event: one transaction


def test_a_failed_write_records_no_event_in_its_transaction(db_engine):
    called = []
    dangling = {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "k"},
                             "subject": {"reference": "Patient/nobody"}}, "request": {"method": "POST", "url": "Observation"}}
    with pytest.raises(TransactionFailed):
        apply_entries(db_engine, _planned(_patient("p-1"), dangling), audit=lambda o: called.append(o) or _event(o))
    assert _counts(db_engine) == (0, 0) and called == []


def _events_of(engine, request_id: str) -> list[dict]:
    found, _ = audit_log.events(engine, None, 500, 0)
    return [e for e in found if any(x.get("what", {}).get("identifier", {}).get("value") == request_id for x in e["entity"])]


@pytest.mark.parametrize("interaction", ["create", "update", "delete", "delete-outcome", "transaction", "batch",
                                         "failed-transaction"])
def test_every_write_request_leaves_exactly_one_event_with_the_status_answered(store_client, db_engine, interaction):
    assert store_client.put("/Patient/p-9", data=json.dumps({"resourceType": "Patient", "id": "p-9"}),
                            content_type="application/fhir+json").status_code == 201
    body = json.dumps({"resourceType": "Patient", "id": "p-9", "gender": "female"})
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "k"}, "subject": {"reference": "Patient/p-9"}}
    headers = {"X-Request-ID": f"write-audit-{interaction}"}
    kind = "application/fhir+json"
    if interaction == "create":
        response = store_client.post("/Observation", data=json.dumps(obs), content_type=kind, headers=headers)
    elif interaction == "update":
        response = store_client.put("/Patient/p-9", data=body, content_type=kind, headers=headers)
    elif interaction in ("delete", "delete-outcome"):
        if interaction == "delete-outcome":
            headers["Prefer"] = "return=OperationOutcome"
        response = store_client.delete("/Patient/p-9", headers=headers)
    else:
        btype = "batch" if interaction == "batch" else "transaction"
        entry = {"resource": obs, "request": {"method": "POST", "url": "Observation"}}
        if interaction == "failed-transaction":  # a stale If-Match: the whole transaction fails with 412
            entry = {"resource": json.loads(body), "request": {"method": "PUT", "url": "Patient/p-9", "ifMatch": 'W/"7"'}}
        response = store_client.post("/Bundle", data=json.dumps({"resourceType": "Bundle", "type": btype, "entry": [entry]}),
                                     content_type=kind, headers=headers)
    expected = {"create": 201, "update": 200, "delete": 204, "delete-outcome": 200, "transaction": 200, "batch": 200,
                "failed-transaction": 412}[interaction]
    assert response.status_code == expected, response.get_data(as_text=True)[:300]
    (event,) = _events_of(db_engine, headers["X-Request-ID"])
    assert event["outcomeDesc"] == f"HTTP {expected}"
    assert event["outcome"] == ("0" if expected < 400 else "4")
    if expected < 400:
        assert {"what": {"reference": "Patient/p-9"}} in [{"what": e["what"]} for e in event["entity"]]
