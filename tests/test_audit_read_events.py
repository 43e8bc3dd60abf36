"""Read events are queued as their fields and written as JSON text by the flush thread, in one INSERT per table per
batch (store/audit_log.py): the text is the same AuditEvent the dict builder makes, and each row of a batch names
its own event's patients, on both engines, however many events wait."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mappings.fhir_vocabulary import instant
from service import audit
from store import audit_log
from store.schema import audit_event_patients, audit_events

FIELDS = [
    (1764950000123, 200, "GET", "GET /Patient/<pid>/$everything", "registry", "127.0.0.1", "a" * 32, ["p-1"], "operation", "E"),
    (1764950000999, 304, "HEAD", "HEAD /Observation/<rid>", "anonymous", "::1", "", [], "read", "E"),
    (1700000000000, 404, "GET", 'GET /x/"quoted"\\back\nslash\t\u0001', "clïent \u2028 ☃", "10.0.0.1", "req-1.2_3", ["a", "b", "c"],
     "search-type", "R"),
    (0, 500, "GET", "GET /Patient/<pid>", "c", "unknown", "r" * 64, ["é-Ünïcode"], "read", "R"),
]


@pytest.mark.parametrize("fields", FIELDS, ids=["everything", "head-no-patients", "escapes", "server-error"])
def test_a_read_event_written_from_its_fields_is_the_auditevent_the_dict_builder_makes(fields):
    assert json.loads(audit.event_json(fields)) == audit.event_of(fields)
    assert audit.event_of(fields)["recorded"] == instant(fields[0])


def _fields(n: int) -> tuple:
    return (1764950000000 + n, 200, "GET", "GET /Patient/<pid>/$everything", "registry", "127.0.0.1", f"request-{n:05d}",
            [f"patient-{n}"] + ([f"other-{n}"] if n % 3 == 0 else []), "operation", "E")


@pytest.mark.parametrize("count", [2, 37, 950])  # 950: more rows than one INSERT statement takes (audit_log._CHUNK)
def test_every_row_of_a_batch_names_its_own_events_patients_in_order(db_engine, count):
    for n in range(count):
        fields = _fields(n)
        audit_log.append_read(db_engine, fields[0], fields[7], audit.event_json, fields)
    audit_log.flush(db_engine)
    with db_engine.connect() as conn:
        events = conn.execute(select(audit_events.c.seq, audit_events.c.recorded, audit_events.c.body).order_by(audit_events.c.seq)).all()
        named = conn.execute(select(audit_event_patients.c.event_seq, audit_event_patients.c.patient_id)).all()
    assert [json.loads(body)["entity"][-1]["what"]["identifier"]["value"] for _, _, body in events] == \
        [f"request-{n:05d}" for n in range(count)]  # the order queued
    assert [recorded for _, recorded, _ in events] == [1764950000000 + n for n in range(count)]
    by_seq: dict[int, set[str]] = {}
    for seq, patient in named:
        by_seq.setdefault(seq, set()).add(patient)
    for seq, _, body in events:
        assert by_seq[seq] == set(audit_log.patients_named(json.loads(body)))  # the index agrees with each body
    assert len(named) == sum(len(_fields(n)[7]) for n in range(count))


def test_a_batch_mixing_queued_fields_and_event_dicts_keeps_both(db_engine):
    fields = _fields(1)
    audit_log.append_read(db_engine, fields[0], fields[7], audit.event_json, fields)
    audit_log.append(db_engine, audit.event_of(_fields(2)))  # a read event given as a dict: queued as well
    audit_log.flush(db_engine)
    events, total = audit_log.events(db_engine, None, 10, 0)
    assert total == 2 and [e["entity"][-1]["what"]["identifier"]["value"] for e in events] == ["request-00002", "request-00001"]
    assert audit_log.events(db_engine, "patient-1", 10, 0)[1] == 1
