"""The RQ job of `$export` (Bulk Data IG v2): one NDJSON file per type, streamed from the database.

Rows are read by a keyset on pk, EXPORT_PAGE at a time, and written as they come: a type is never held in
memory. `_typeFilter` queries run through store.search, page by page. Beside the FHIR types the job writes the
registries' normalised procedure histories (registry/procedure_history.py), one record a line, as the output of
type `procedure-history` (docs/bulk-data.md).
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from rq import get_current_job
from sqlalchemy import Connection, select

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


def _write(path: Path, lines: Iterator[str]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line)
            handle.write("\n")
            count += 1
    return count


def _rows(engine, rtype: str, info: dict, members: set[str] | None) -> Iterator[str]:
    filters = (info.get("type_filters") or {}).get(rtype)
    if filters:
        yield from _filtered(engine, rtype, filters, info, members)
        return
    # One read transaction per type: its pages come from one snapshot on PostgreSQL (REPEATABLE READ), and the
    # connection is not reopened for each page (bench/bulk.py).
    after = 0
    with db.reading(engine) as conn:
        while True:
            rows = 0
            for pk, body in conn.execute(_page(rtype, info, members, after)):
                rows, after = rows + 1, pk
                yield body
            if rows < EXPORT_PAGE:
                return


def _page(rtype: str, info: dict, members: set[str] | None, after: int):
    r = resources
    query = select(r.c.pk, r.c.body).where(r.c.res_type == rtype, r.c.deleted.is_(False), r.c.pk > after)
    if info.get("since_ms") is not None:
        query = query.where(r.c.last_updated >= info["since_ms"])
    if info["level"] == "patient":
        query = query.where(r.c.patient_id.is_not(None))
    elif members is not None:
        query = query.where(r.c.patient_id.in_(sorted(members)))
    return query.order_by(r.c.pk).limit(EXPORT_PAGE)


def _filtered(engine, rtype: str, queries: list[list[tuple[str, str]]], info: dict, members: set[str] | None) -> Iterator[str]:
    """Rows matching any of the type's `_typeFilter` queries (ORed, as the IG says), each row once."""
    seen: set[int] = set()
    since = [("_lastUpdated", f"ge{instant(info['since_ms'])}")] if info.get("since_ms") is not None else []
    for params in queries:
        cursor = None
        while True:
            with db.reading(engine) as conn:
                result = search(conn, rtype, [*params, *since, ("_count", str(EXPORT_PAGE))], cursor=cursor)
            for row in result.rows:
                if row["pk"] in seen or not _in_scope(row["body"], info, members):
                    continue
                seen.add(row["pk"])
                yield row["body"]
            cursor = result.next_cursor
            if not cursor:
                break


def _in_scope(body: str, info: dict, members: set[str] | None) -> bool:
    if info["level"] == "system":
        return True
    owner = patient_of(json.loads(body))
    return owner is not None and (members is None or owner in members)


def _procedure_histories(engine, info: dict, members: set[str] | None) -> Iterator[str]:
    """One normalised procedure record a line, patient after patient (one compartment in memory at a time)."""
    patients = reads.patients_changed_since(engine, info.get("since_ms"))
    for pid in patients:
        if members is not None and pid not in members:
            continue
        for record in procedure_history(_compartment(engine, pid), f"Patient/{pid}"):
            yield json.dumps(public(record), ensure_ascii=False)


def _compartment(engine, pid: str) -> list[dict]:
    conn: Connection
    with db.reading(engine) as conn:
        return [json.loads(s.body) for s in reads.compartment_rows(conn, pid) if s.body]
