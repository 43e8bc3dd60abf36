"""Reading the store of record: one resource, one version, history, a patient's compartment, what changed."""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, select
from sqlalchemy.exc import OperationalError

from store import db
from store.schema import patient_state, resource_versions, resources

COMPARTMENT_CHUNK = 500


@dataclass(frozen=True)
class Stored:
    """One version as stored: deleted versions have no body."""

    rtype: str
    rid: str
    version: int
    last_updated: int  # epoch ms
    deleted: bool
    body: str | None
    patient: str | None = None
    method: str | None = None

    @property
    def resource(self) -> dict | None:
        return json.loads(self.body) if self.body else None


def instant_ms(instant: str) -> int:
    """FHIR instant/dateTime (with zone, or a date) to epoch milliseconds."""
    text = instant.strip().replace("Z", "+00:00")
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def _stored(row) -> Stored:
    return Stored(row.res_type, row.res_id, row.version, row.last_updated, bool(getattr(row, "deleted", row.body is None)),
                  row.body, row.patient_id, getattr(row, "method", None))


def read_row(conn: Connection, rtype: str, rid: str) -> Stored | None:
    """The current version (deleted ones too, so that a read can answer 410)."""
    row = conn.execute(select(resources).where(resources.c.res_type == rtype, resources.c.res_id == rid)).first()
    return _stored(row) if row else None


def read(engine: Engine, rtype: str, rid: str) -> Stored | None:
    with db.reading(engine) as conn:
        return read_row(conn, rtype, rid)


def current(engine: Engine, rtype: str, rid: str) -> dict | None:
    """The live resource as a dict, None when unknown or deleted."""
    stored = read(engine, rtype, rid)
    return stored.resource if stored and not stored.deleted else None


def vread(engine: Engine, rtype: str, rid: str, version: int) -> Stored | None:
    with db.reading(engine) as conn:
        row = conn.execute(select(resource_versions).where(
            resource_versions.c.res_type == rtype, resource_versions.c.res_id == rid,
            resource_versions.c.version == version)).first()
    return _stored(row) if row else None


def history(engine: Engine, rtype: str | None, rid: str | None, since_ms: int | None, count: int,
            before_seq: int | None = None) -> tuple[list[Stored], int | None]:
    """Versions newest first (instance, type or system level); (page, seq to continue before) for keyset paging."""
    v = resource_versions
    query = select(v)
    if rtype:
        query = query.where(v.c.res_type == rtype)
    if rid:
        query = query.where(v.c.res_id == rid)
    if since_ms is not None:
        query = query.where(v.c.last_updated >= since_ms)
    if before_seq is not None:
        query = query.where(v.c.seq < before_seq)
    with db.reading(engine) as conn:
        rows = list(conn.execute(query.order_by(v.c.seq.desc()).limit(count + 1)))
    more = rows[count].seq + 1 if len(rows) > count else None
    return [_stored(r) for r in rows[:count]], more


def compartment_rows(conn: Connection, pid: str, since_ms: int | None = None, types: set[str] | None = None) -> Iterator[Stored]:
    """Every live resource of the patient's compartment, the Patient itself included (one indexed query)."""
    r = resources
    query = select(r).where(r.c.patient_id == pid, r.c.deleted.is_(False))
    if since_ms is not None:
        query = query.where(r.c.last_updated >= since_ms)
    if types:
        query = query.where(r.c.res_type.in_(sorted(types)))
    for row in conn.execute(query.order_by(r.c.pk)):
        yield _stored(row)


def compartment(engine: Engine, pid: str, since_ms: int | None = None, types: set[str] | None = None) -> list[dict]:
    with db.reading(engine) as conn:
        return [json.loads(s.body) for s in compartment_rows(conn, pid, since_ms, types) if s.body]


def compartment_size(engine: Engine, pid: str) -> int:
    from sqlalchemy import func

    with db.reading(engine) as conn:
        return conn.execute(select(func.count()).select_from(resources).where(
            resources.c.patient_id == pid, resources.c.deleted.is_(False))).scalar_one()


def patient_version(engine: Engine, pid: str) -> int:
    with db.reading(engine) as conn:
        return patient_version_in(conn, pid)


def patient_version_in(conn: Connection, pid: str) -> int:
    return conn.execute(select(patient_state.c.version).where(patient_state.c.patient_id == pid)).scalar() or 0


_PATIENT_STATE_SQL = ("SELECT r.deleted, s.version FROM resources r LEFT JOIN patient_state s ON s.patient_id = r.res_id "
                      "WHERE r.res_type = 'Patient' AND r.res_id = ")


_lookup_engines: dict[Engine, Engine] = {}


def _lookup_engine(engine: Engine) -> Engine:
    """PostgreSQL: a pool of the same database without the pre-ping (`SELECT 1` at every checkout, one more round
    trip than the lookup itself); a connection the server dropped fails the lookup, which then runs once more on
    a fresh one. SQLite has no pre-ping: the engine itself."""
    if engine.dialect.name != "postgresql":
        return engine
    if engine not in _lookup_engines:
        _lookup_engines[engine] = create_engine(engine.url, pool_size=10, max_overflow=20, connect_args={"connect_timeout": 5})
    return _lookup_engines[engine]


def _forget_lookup_connections() -> None:
    """A forked child opens its own connections (as store.db does for its engines)."""
    for lookup in _lookup_engines.values():
        lookup.dispose(close=False)


os.register_at_fork(after_in_child=_forget_lookup_connections)


def patient_exists(engine: Engine, pid: str) -> tuple[bool, int]:
    """(the Patient is held and live, its compartment's version) in one query.

    On every cached read, so on the driver's connection in autocommit, without SQLAlchemy's statement layer: one
    SELECT reads one consistent snapshot by itself, so it needs no BEGIN/COMMIT (PostgreSQL: 1 round trip, not 4
    with the pre-ping) and no statement compilation (bench/README.md, benchmark 2). It reads the committed row,
    so a write acknowledged by any process is seen."""
    lookup = _lookup_engine(engine)
    for attempt in (1, 2):
        try:
            row = _patient_state_row(lookup, pid)
            break
        except db.DatabaseUnavailable:
            if attempt == 2 or lookup is engine:
                raise
            lookup.dispose()  # after a server restart every pooled connection is dead, not only this one
    if row is None:
        return False, 0
    return not row[0], row[1] or 0


# SQLite: each thread keeps its own driver connection for this one lookup, outside the engine's pool: checking a
# connection out of the pool and back cost twice the SELECT itself (bench/gateway.py, benchmark 2). The SELECT runs
# in autocommit, its own read transaction, so it sees every committed write, like the pooled path.
_sqlite_lookups = threading.local()


def _sqlite_file(engine: Engine) -> str | None:
    """The database file of a plain file URL (no URI options, not in memory): a second connection sees the same
    data. None for any other (the pooled path then serves the lookup)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.query or not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return url.database


def _sqlite_row(engine: Engine, path: str, pid: str) -> tuple | None:
    connections = _sqlite_lookups.__dict__.setdefault("by_engine", {})
    conn = connections.get(engine)
    try:
        if conn is None:
            conn = connections[engine] = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
        return conn.execute(_PATIENT_STATE_SQL + "?", (pid,)).fetchone()
    except sqlite3.OperationalError as exc:
        connections.pop(engine, None)
        raise db.DatabaseUnavailable(str(exc)) from None


def _forget_sqlite_lookups() -> None:
    """A forked child must not use its parent's connections (the forking thread's would survive the fork)."""
    global _sqlite_lookups
    _sqlite_lookups = threading.local()


os.register_at_fork(after_in_child=_forget_sqlite_lookups)


_sqlite_files: dict[Engine, str | None] = {}


def _patient_state_row(engine: Engine, pid: str) -> tuple | None:
    path = _sqlite_files.get(engine, "")
    if path == "":
        path = _sqlite_files[engine] = _sqlite_file(engine)
    if path is not None:
        return _sqlite_row(engine, path, pid)
    sql = _PATIENT_STATE_SQL + ("?" if engine.dialect.paramstyle == "qmark" else "%s")
    try:
        conn = engine.raw_connection()
    except OperationalError as exc:
        raise db.DatabaseUnavailable(str(exc.orig)) from None
    except engine.dialect.loaded_dbapi.OperationalError as exc:  # raw_connection() lets the driver's error through
        raise db.DatabaseUnavailable(str(exc)) from None
    try:
        driver: Any = conn.driver_connection
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            driver.autocommit = True  # a client-side switch; the pool hands out connections outside a transaction
        cursor = conn.cursor()
        cursor.execute(sql, (pid,))
        row = cursor.fetchone()
        cursor.close()
        if postgres:
            driver.autocommit = False
        return row
    except engine.dialect.loaded_dbapi.OperationalError as exc:
        conn.invalidate()  # the server went away under this connection: the pool must not hand it out again
        raise db.DatabaseUnavailable(str(exc)) from None
    finally:
        conn.close()


def patients_changed_since(engine: Engine, since_ms: int | None) -> list[str]:
    query = select(patient_state.c.patient_id)
    if since_ms is not None:
        query = query.where(patient_state.c.changed_at >= since_ms)
    with db.reading(engine) as conn:
        return [p for (p,) in conn.execute(query.order_by(patient_state.c.changed_at, patient_state.c.patient_id))]


def owner(engine: Engine, rtype: str, rid: str) -> str | None:
    with db.reading(engine) as conn:
        return conn.execute(select(resources.c.patient_id).where(
            resources.c.res_type == rtype, resources.c.res_id == rid)).scalar()


def load_many(engine: Engine, refs: list[tuple[str, str]]) -> list[dict]:
    """The live resources among refs (Type, id), in no particular order. One `res_type = ? AND res_id IN (...)`
    per type and chunk: SQLite answers a row-value (type, id) IN list by scanning the whole table."""
    by_type: dict[str, list[str]] = {}
    for rtype, rid in dict.fromkeys(refs):
        by_type.setdefault(rtype, []).append(rid)
    found: list[dict] = []
    with db.reading(engine) as conn:
        for rtype, ids in by_type.items():
            for start in range(0, len(ids), COMPARTMENT_CHUNK):
                chunk = ids[start:start + COMPARTMENT_CHUNK]
                found += [json.loads(r.body) for r in conn.execute(select(resources.c.body).where(
                    resources.c.res_type == rtype, resources.c.res_id.in_(chunk), resources.c.deleted.is_(False)))]
    return found


def compartment_page(conn: Connection, pid: str, since_ms: int | None, types: set[str] | None, after_pk: int | None,
                     limit: int) -> tuple[list[Stored], int | None, int]:
    """One page of $everything: the Patient first, then the compartment in write order, by a keyset on pk so that
    no resource is skipped or repeated between pages. (page, pk to continue after, total)."""
    from sqlalchemy import func

    r = resources
    where = [r.c.patient_id == pid, r.c.deleted.is_(False)]
    if since_ms is not None:
        where.append(r.c.last_updated >= since_ms)
    if types:
        where.append(r.c.res_type.in_(sorted(types)))
    total = conn.execute(select(func.count()).select_from(r).where(*where)).scalar_one()
    page: list[Stored] = []
    if after_pk is None:
        page = [_stored(row) for row in conn.execute(select(r).where(*where, r.c.res_type == "Patient", r.c.res_id == pid))]
    rest = select(r).where(*where, ~((r.c.res_type == "Patient") & (r.c.res_id == pid)))
    if after_pk is not None:
        rest = rest.where(r.c.pk > after_pk)
    rows = list(conn.execute(rest.order_by(r.c.pk).limit(limit - len(page) + 1)))
    more = len(rows) > limit - len(page)
    rows = rows[:limit - len(page)]
    page += [_stored(row) for row in rows]
    last = rows[-1].pk if rows else (after_pk or 0)
    return page, (last if more else None), total
