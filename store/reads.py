"""Reading the store of record: one resource, one version, history, a patient's compartment, what changed."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Connection, Engine, and_, select

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
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
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


def patient_exists(engine: Engine, pid: str) -> tuple[bool, int]:
    """(the Patient is held and live, its compartment's version) in one query."""
    with db.reading(engine) as conn:
        row = conn.execute(select(resources.c.deleted, patient_state.c.version).select_from(resources.outerjoin(
            patient_state, patient_state.c.patient_id == resources.c.res_id)).where(
            and_(resources.c.res_type == "Patient", resources.c.res_id == pid))).first()
    if row is None:
        return False, 0
    return not row.deleted, row.version or 0


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
    """The live resources among refs (Type, id), in no particular order."""
    from sqlalchemy import tuple_

    found: list[dict] = []
    with db.reading(engine) as conn:
        for start in range(0, len(refs), COMPARTMENT_CHUNK):
            chunk = refs[start:start + COMPARTMENT_CHUNK]
            found += [json.loads(r.body) for r in conn.execute(select(resources.c.body).where(
                tuple_(resources.c.res_type, resources.c.res_id).in_(chunk), resources.c.deleted.is_(False)))]
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
