"""The RQ job of `$export` (Bulk Data IG v2): one NDJSON file per type, streamed from the database.

Each type is one streamed statement in one read transaction, EXPORT_PAGE rows at a time, written a page at a
time as they come: a type is never held in memory. `_typeFilter` queries run through store.search, page by page. Beside the FHIR types the job writes the
registries' normalised procedure histories (registry/procedure_history.py), one record a line, as the output of
type `procedure-history` (docs/bulk-data.md).
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from rq import get_current_job
from sqlalchemy import Connection, bindparam, select

from mappings.fhir_vocabulary import instant
from registry.procedure_history import procedure_history, public
from store import (
    bulk_schema,  # noqa: F401  (declares the (res_type, pk) index the keyset pages use)
    db,
    reads,
)
from store.references import patient_of
from store.schema import resources
from store.search import search
from workers.database import store

log = logging.getLogger("workers.bulk_export")
EXPORT_PAGE = 1000
META_KEY = "bulk_export"
PROCEDURE_HISTORY = "procedure-history"


def cancel_key(job_id: str) -> str:
    return f"bulk:export:cancelled:{job_id}"


def run_export(folder: str, request_info: dict) -> dict:
    """request_info: level (system | patient | group), group members, types, since_ms, type_filters {type: [query]}."""
    job = get_current_job()
    assert job is not None, "runs as an RQ job"
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    engine = store()
    members = set(request_info.get("members") or []) if request_info["level"] == "group" else None
    types = request_info.get("types") or _types_held(engine, request_info["level"] != "system")
    output: list[dict] = []
    for rtype in types:
        if job.connection.exists(cancel_key(job.id)):
            shutil.rmtree(root, ignore_errors=True)  # what was written before the DELETE arrived
            return {"cancelled": True, "output": []}
        _progress(job, f"exporting {rtype} ({len(output)} of {len(types)} types done)")
        path = root / f"{rtype}.ndjson"
        count = _write(path, _rows(engine, rtype, request_info, members))
        if count:
            output.append({"type": rtype, "file": path.name, "count": count})
        else:
            path.unlink()
    if request_info.get("procedure_history") and ("Procedure" in types or not request_info.get("types")):
        _progress(job, "exporting procedure histories")
        path = root / f"{PROCEDURE_HISTORY}.ndjson"
        count = _write(path, _procedure_histories(engine, request_info, members))
        if count:
            output.append({"type": PROCEDURE_HISTORY, "file": path.name, "count": count})
    return {"cancelled": False, "output": output}


def _progress(job, text: str) -> None:
    job.meta[META_KEY] = text
    job.save_meta()


def _types_held(engine, compartment_only: bool) -> list[str]:
    query = select(resources.c.res_type).where(resources.c.deleted.is_(False)).distinct()
    if compartment_only:
        query = query.where(resources.c.patient_id.is_not(None))
    with db.reading(engine) as conn:
        return sorted(t for (t,) in conn.execute(query))


def _write(path: Path, pages: Iterator[list[str]]) -> int:
    """Pages of NDJSON lines (no newline) to the file: one write per page, not two per line (bench/bulk.py)."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for page in pages:
            if page:
                handle.write("\n".join(page))
                handle.write("\n")
                count += len(page)
    return count


def _rows(engine, rtype: str, info: dict, members: set[str] | None) -> Iterator[list[str]]:
    filters = (info.get("type_filters") or {}).get(rtype)
    if filters:
        yield from _filtered(engine, rtype, filters, info, members)
        return
    # One read transaction and one statement per type, streamed (a server-side cursor on PostgreSQL, SQLite's own
    # cursor): its rows come from one snapshot on PostgreSQL (REPEATABLE READ), only `EXPORT_PAGE` rows are in
    # memory at a time, and a small type costs one statement instead of one per page (bench/bulk.py).
    with db.reading(engine) as conn:
        statement, params = _stream(rtype, info, members)
        result = conn.execution_options(yield_per=EXPORT_PAGE).execute(statement, params)
        for page in result.scalars().partitions():
            yield list(page)


def _stream(rtype: str, info: dict, members: set[str] | None):
    params: dict = {"rtype": rtype}
    if info.get("since_ms") is not None:
        params["since"] = info["since_ms"]
    if info["level"] != "patient" and members is not None:
        params["members"] = sorted(members)
    return _statement(info["level"] == "patient", "since" in params, "members" in params), params


@lru_cache(maxsize=None)
def _statement(patients_only: bool, since: bool, members: bool):
    """One statement per shape, built once: a small type's export is dominated by fixed per-statement costs."""
    r = resources
    query = select(r.c.body).where(r.c.res_type == bindparam("rtype"), r.c.deleted.is_(False))
    if since:
        query = query.where(r.c.last_updated >= bindparam("since"))
    if patients_only:
        query = query.where(r.c.patient_id.is_not(None))
    elif members:
        query = query.where(r.c.patient_id.in_(bindparam("members", expanding=True)))
    return query.order_by(r.c.pk)


def _filtered(engine, rtype: str, queries: list[list[tuple[str, str]]], info: dict, members: set[str] | None) -> Iterator[list[str]]:
    """Rows matching any of the type's `_typeFilter` queries (ORed, as the IG says), each row once."""
    seen: set[int] = set()
    since = [("_lastUpdated", f"ge{instant(info['since_ms'])}")] if info.get("since_ms") is not None else []
    for params in queries:
        cursor = None
        while True:
            with db.reading(engine) as conn:
                result = search(conn, rtype, [*params, *since, ("_count", str(EXPORT_PAGE))], cursor=cursor)
            page = []
            for row in result.rows:
                if row["pk"] in seen or not _in_scope(row["body"], info, members):
                    continue
                seen.add(row["pk"])
                page.append(row["body"])
            yield page
            cursor = result.next_cursor
            if not cursor:
                break


def _in_scope(body: str, info: dict, members: set[str] | None) -> bool:
    if info["level"] == "system":
        return True
    owner = patient_of(json.loads(body))
    return owner is not None and (members is None or owner in members)


def _procedure_histories(engine, info: dict, members: set[str] | None) -> Iterator[list[str]]:
    """One normalised procedure record a line, patient after patient (one compartment in memory at a time)."""
    patients = reads.patients_changed_since(engine, info.get("since_ms"))
    for pid in patients:
        if members is not None and pid not in members:
            continue
        yield [json.dumps(public(record), ensure_ascii=False) for record in procedure_history(_compartment(engine, pid), f"Patient/{pid}")]


def _compartment(engine, pid: str) -> list[dict]:
    conn: Connection
    with db.reading(engine) as conn:
        return [json.loads(s.body) for s in reads.compartment_rows(conn, pid) if s.body]
