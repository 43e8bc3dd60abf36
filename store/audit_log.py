"""The audit trail: AuditEvents appended to an append-only table (never updated or deleted by the service),
by the gateway for requests and by the workers for sync jobs; indexed by the patients each event names.

Durability decision (see docs/security.md): the events of reads (GET/HEAD) are queued in the process and
written in one multi-row transaction every FLUSH_SECONDS (default 0.05 s, GATEWAY_AUDIT_FLUSH_SECONDS), when
MAX_BATCH are waiting, before any durable event of this process (so that one process's trail keeps its order),
before the trail is listed, and at process exit (atexit: `python -m service` on SIGTERM, a gunicorn worker on
its normal exit). A SIGKILL, a gunicorn worker timeout or a crash of the interpreter loses at most the last
FLUSH_SECONDS of read events of that process; while the database is down they wait (up to MAX_PENDING).
One INSERT per read, in its own transaction, cost as much as the rest of a cached read (bench/gateway.py).
The events of writes and sync jobs are appended at once and fully durable, like the clinical data they describe;
a write through store.writes carries its own event in its transaction (record_in), so the event commits with
the write, in the same fsync, or not at all.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from mappings.fhir_vocabulary import now_instant, now_ms
from store import db, row_writer
from store.schema import audit_event_patients, audit_events

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


log = logging.getLogger("store.audit")
FLUSH_SECONDS = float(os.environ.get("GATEWAY_AUDIT_FLUSH_SECONDS") or 0.05)
MAX_BATCH = 500  # a flush starts at once when this many read events wait
MAX_PENDING = 100_000  # while the database is down: beyond this the oldest waiting events are dropped, and logged


# A read's event as the gateway queues it: (render, fields, patients named); render(fields) is its JSON text,
# called by the flush thread (service/audit.py event_json), so the request pays for neither a dict nor its JSON.
Prepared = tuple[Callable[[Any], str], Any, Sequence[str]]
Queued = tuple[int, dict | Prepared]  # (epoch ms when the request was answered, the event)
_INSERT_ONE = insert(audit_events).returning(audit_events.c.seq)
_INSERT_MANY = insert(audit_events).returning(audit_events.c.seq, sort_by_parameter_order=True)


def _insert(conn: Connection, events: list[Queued]) -> None:
    """Append events in order, in the caller's transaction: two multi-row INSERTs whatever their number."""
    if not events:
        return
    rows: list[tuple[int, str]] = []
    patients: list[Sequence[str]] = []
    for ms, e in events:
        if isinstance(e, dict):
            rows.append((ms, json.dumps(e, ensure_ascii=False)))
            patients.append(patients_named(e))
        else:
            render, fields, named_here = e
            rows.append((ms, render(fields)))
            patients.append(named_here)
    if len(rows) > 1 and conn.dialect.name in _PLACEHOLDER:
        _insert_batch(conn, rows, patients)
        return
    if len(rows) == 1:  # a write's own event: a plain INSERT ... RETURNING, not the executemany machinery
        seqs: Sequence[int] = [conn.execute(_INSERT_ONE, {"recorded": rows[0][0], "body": rows[0][1]}).scalar_one()]
    else:
        seqs = conn.execute(_INSERT_MANY, [{"recorded": ms, "body": body} for ms, body in rows]).scalars().all()
    named = [{"event_seq": seq, "patient_id": p} for seq, pids in zip(seqs, patients) for p in pids]
    if named:
        conn.execute(insert(audit_event_patients), named)


# A batch of read events (tens per flush) through the driver, in one statement per table and chunk: SQLAlchemy's
# executemany with RETURNING spent ~20 us (SQLite) and ~37 us (PostgreSQL) of client CPU per event, more than
# the rest of the event's audit cost (bench/gateway.py, benchmark 2). The rows of one INSERT take ascending seq
# values in the order listed (SQLite's rowid, PostgreSQL's sequence, read in ORDER BY order): the seqs RETURNING
# gives are sorted and matched to the rows by position, as SQLAlchemy's own sort_by_parameter_order does for an
# autoincrement key.
_CHUNK = 400
_PLACEHOLDER = {"sqlite": "(?,?)", "postgresql": "(%s,%s)"}


def _events_sql(dialect: str, n: int) -> str:
    return f"INSERT INTO audit_events (recorded, body) VALUES {','.join([_PLACEHOLDER[dialect]] * n)} RETURNING seq"


def _patients_sql(dialect: str, n: int) -> str:
    return f"INSERT INTO audit_event_patients (event_seq, patient_id) VALUES {','.join([_PLACEHOLDER[dialect]] * n)}"


def _insert_batch(conn: Connection, rows: list[tuple[int, str]], patients: list[Sequence[str]]) -> None:
    dialect = conn.dialect.name
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # the transaction's own connection
    try:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            cursor.execute(_events_sql(dialect, len(chunk)), [v for row in chunk for v in row])
            seqs = sorted(seq for (seq,) in cursor.fetchall())
            if len(seqs) != len(chunk):
                raise RuntimeError(f"audit insert returned {len(seqs)} keys for {len(chunk)} rows")
            named = [(seq, p) for seq, pids in zip(seqs, patients[start:start + _CHUNK]) for p in pids]
            for first in range(0, len(named), _CHUNK):
                part = named[first:first + _CHUNK]
                cursor.execute(_patients_sql(dialect, len(part)), [v for row in part for v in row])
    finally:
        cursor.close()


class _ReadQueue:
    """This process's read events waiting for their flush, per database engine, and the thread that flushes them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards pending
        self.flushing = threading.Lock()  # one flush at a time, so events reach the table in the order queued
        self.wake = threading.Event()
        self.pending: dict[Engine, list[Queued]] = {}
        self.thread: threading.Thread | None = None

    def put(self, engine: Engine, event: dict | Prepared, ms: int | None = None) -> None:
        with self.lock:
            waiting = self.pending.setdefault(engine, [])
            waiting.append((now_ms() if ms is None else ms, event))
            if len(waiting) > MAX_PENDING:
                del waiting[:len(waiting) - MAX_PENDING]
                log.error("audit events of reads dropped: the database has been unavailable too long")
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="audit-flush", daemon=True)
                self.thread.start()
            if len(waiting) >= MAX_BATCH:
                self.wake.set()

    def _take(self, engine: Engine) -> list[Queued]:
        with self.lock:
            return self.pending.pop(engine, [])

    def _give_back(self, engine: Engine, events: list[Queued]) -> None:
        with self.lock:
            self.pending[engine] = events + self.pending.get(engine, [])

    def flush(self, engine: Engine, durable: dict | None = None) -> None:
        """Write the waiting read events (and `durable`, after them, in the same fully durable transaction)."""
        with self.flushing:
            events = self._take(engine)
            if not events and durable is None:
                return
            batch = events + ([(now_ms(), durable)] if durable is not None else [])
            try:
                db.write(engine, lambda conn: _insert(conn, batch), durable=durable is not None)
            except db.DatabaseUnavailable:
                self._give_back(engine, events)  # kept for the next flush; the caller sees the error
                raise

    def flush_all(self) -> bool:
        """Flush every engine's waiting events; False when one could not be written (they stay queued)."""
        with self.lock:
            engines = list(self.pending)
        ok = True
        for engine in engines:
            try:
                self.flush(engine)
            except db.DatabaseUnavailable:
                log.error("audit events of reads wait: the database is unavailable")  # still queued
                ok = False
            except Exception:  # a flush thread must survive: these events are lost, and logged
                log.exception("audit events of reads could not be written")
                ok = False
        return ok

    def _run(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            if not self.flush_all():
                time.sleep(max(FLUSH_SECONDS, 0.5))  # the database is down: one attempt per half second, no spin


_reads = _ReadQueue()


@atexit.register
def _flush_at_exit() -> None:
    _reads.flush_all()


def _after_fork() -> None:
    """A forked child inherits the parent's queue but not its thread: it starts empty and with a thread of its own."""
    global _reads
    _reads = _ReadQueue()


os.register_at_fork(after_in_child=_after_fork)


def append(engine: Engine, event: dict) -> None:
    """Append one event: the event of a read is queued for the next flush (see the module docstring); any other
    is written at once, fully durable, after this process's waiting read events in the same transaction."""
    if records_a_read(event):
        _reads.put(engine, event)
    else:
        _reads.flush(engine, durable=event)


def append_read(engine: Engine, ms: int, patients: Sequence[str], render: Callable[[Any], str], fields: Any) -> None:
    """Queue the event of a read (GET/HEAD) answered at ms, naming patients, as render(fields) will write it: the
    JSON is made by the flush thread, once per event (the batch decision is the same as append's for a read)."""
    _reads.put(engine, (render, fields, patients), ms)


def flush(engine: Engine) -> None:
    """Write this process's waiting read events now (the trail is listed, a test looks, the process stops)."""
    _reads.flush(engine)


def before_write_event(engine: Engine) -> None:
    """Called before a write transaction that will carry its own event (record_in): this process's waiting read
    events are written first, so the trail keeps this process's order (reads answered before the write come
    before it). Nothing waiting (the usual case of a writer): no transaction. A failure here must not stop the
    write: the events stay queued on an outage (or are logged as lost), as on the flush timer."""
    if not _reads.pending.get(engine):
        return
    try:
        _reads.flush(engine)
    except db.DatabaseUnavailable:
        log.error("audit events of reads wait: the database is unavailable")
    except Exception:
        log.exception("audit events of reads could not be written")


def record_in(conn: Connection, event: dict) -> None:
    """Append a write's event in that write's own transaction: it commits with the clinical rows it describes
    (exactly as durable, one commit and one fsync for both) or not at all when they roll back. Inside the write's
    pipeline (PostgreSQL, store.row_writer.pipelined) one statement writes the event and the patients it names."""
    recorded, body, named = now_ms(), json.dumps(event, ensure_ascii=False), patients_named(event)
    if row_writer.send(conn, _EVENT_PIPELINED, [recorded, body, named]):
        return
    _insert(conn, [(recorded, (str, body, named))])  # rendered already: str(body) is body


# record_in's event and its patients as one statement of a psycopg pipeline: the seq the first INSERT draws is
# the second's event_seq (a data-modifying WITH runs whether or not its rows are read, so with no patient named
# the event alone is written).
_EVENT_PIPELINED = ("WITH e AS (INSERT INTO audit_events (recorded, body) VALUES (%b::bigint, %b::text) RETURNING seq) "
                    "INSERT INTO audit_event_patients (event_seq, patient_id) SELECT e.seq, p FROM e, unnest(%b::text[]) AS p")


def events(engine: Engine, patient: str | None, count: int, offset: int) -> tuple[list[dict], int]:
    """(newest-first page, total) of the events, or of those naming one patient; this process's waiting read
    events are written first, so that a reader of the trail sees every request this process answered."""
    flush(engine)
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
