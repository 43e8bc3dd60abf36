"""Search-index rows of a resource, extracted from its JSON by the paths of mappings/search_parameters.json.

Pure Python over dicts (no fhir.resources models): this runs inside every write's transaction.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, delete

from store import row_writer
from store.schema import INDEX_TABLES
from store.search_params import CHOICE_SUFFIXES, SearchParam, Step, indexed_params

MAX_LEN = 255
LOW, HIGH = -(2**62), 2**62           # an open end of a Period
_WS = re.compile(r"\s+")
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")
# Type/id at the end of a reference, with an optional base before it and _history after it.
_REF = re.compile(r"^(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    """Lower case, accents removed (NFKD), whitespace collapsed, cut to the column size. Cached: displays and
    names repeat across the resources of a write."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WS.sub(" ", bare).strip().lower()[:MAX_LEN]


def date_range(text: str) -> tuple[int, int] | None:
    """First and last epoch ms a FHIR date/dateTime/instant covers at its precision; None when unparseable.

    A value without a time zone is read as UTC (the server's zone, as search.html allows).
    """
    m = _DATE.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        tz = dt.UTC if zone in (None, "Z") else _offset(zone)
        start = dt.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                            int(second or 0), int((frac or "0")[:6].ljust(6, "0")), tzinfo=tz)
        end = _precision_end(start, month, day, hour, second, frac)
    except (ValueError, OverflowError):
        return None
    return _ms(start), _ms(end) - 1


def _offset(zone: str) -> dt.timezone:
    sign = -1 if zone[0] == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))


def _precision_end(start: dt.datetime, month: str | None, day: str | None, hour: str | None,
                   second: str | None, frac: str | None) -> dt.datetime:
    """The first instant after the period the value names."""
    if month is None:
        return start.replace(year=start.year + 1)
    if day is None:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    if hour is None:
        return start + dt.timedelta(days=1)
    if second is None:
        return start + dt.timedelta(minutes=1)
    if frac is None:
        return start + dt.timedelta(seconds=1)
    return start + dt.timedelta(milliseconds=1)


def _ms(moment: dt.datetime) -> int:
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _values(node: Any, steps: tuple[Step, ...], kind: str) -> Iterator[Any]:
    """Every value at the path, arrays flattened; a final [x] step takes the choice types fitting `kind`."""
    if isinstance(node, list):
        for item in node:
            yield from _values(item, steps, kind)
        return
    if not steps:
        yield node
        return
    if not isinstance(node, dict):
        return
    step = steps[0]
    if step.choice:
        for suffix in CHOICE_SUFFIXES[kind]:
            if step.name + suffix in node:
                yield from _values(node[step.name + suffix], steps[1:], kind)
    elif step.name in node:
        yield from _values(node[step.name], steps[1:], kind)


def _token_rows(value: Any) -> Iterator[dict]:
    if isinstance(value, bool):
        yield {"system": "", "code": "true" if value else "false", "text": None}
    elif isinstance(value, str):
        yield {"system": "", "code": value[:MAX_LEN], "text": None}
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value):
            yield from _concept_rows(value)
        elif "value" in value:   # Identifier
            type_text = (value.get("type") or {}).get("text")
            yield {"system": str(value.get("system", ""))[:MAX_LEN], "code": str(value["value"])[:MAX_LEN],
                   "text": normalise(type_text) if isinstance(type_text, str) else None}
        elif "code" in value:    # Coding
            yield _coding_row(value, None)


def _coding_row(coding: dict, fallback_text: str | None) -> dict:
    text = coding.get("display") if isinstance(coding.get("display"), str) else fallback_text
    return {"system": str(coding.get("system", ""))[:MAX_LEN], "code": str(coding.get("code", ""))[:MAX_LEN],
            "text": normalise(text) if text else None}


def _concept_rows(concept: dict) -> Iterator[dict]:
    text = concept.get("text") if isinstance(concept.get("text"), str) else None
    codings = [c for c in concept.get("coding", []) if isinstance(c, dict)]
    rows = [_coding_row(c, text) for c in codings]
    yield from rows
    # CodeableConcept.text that no display repeats gets its own row, so that :text finds it.
    if text and all(r["text"] != normalise(text) for r in rows):
        yield {"system": "", "code": "", "text": normalise(text)}


_NAME_PARTS = ("family", "given", "text", "prefix", "suffix")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _string_rows(value: Any) -> Iterator[dict]:
    if isinstance(value, str):
        if value.strip():
            yield {"value_norm": normalise(value), "value_exact": value[:MAX_LEN]}
    elif isinstance(value, dict):
        parts = _NAME_PARTS if any(k in value for k in ("family", "given", "prefix", "suffix")) else _ADDRESS_PARTS
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str):
                    yield from _string_rows(text)


def _reference_rows(value: Any) -> Iterator[dict]:
    ref = value.get("reference") if isinstance(value, dict) else value   # a canonical is a bare string
    if not isinstance(ref, str) or not ref or ref.startswith("#"):
        return
    m = _REF.match(ref) if not ref.startswith("urn:") else None
    if m is None:
        yield {"target_type": None, "target_id": None, "target_url": ref[:MAX_LEN]}
    else:
        yield {"target_type": m["type"], "target_id": m["id"], "target_url": ref[:MAX_LEN] if m["base"] else None}


def _date_rows(value: Any) -> Iterator[dict]:
    if isinstance(value, str):
        span = date_range(value)
        if span:
            yield {"low": span[0], "high": span[1]}
    elif isinstance(value, dict) and ("start" in value or "end" in value):   # Period
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        if start or end:
            yield {"low": start[0] if start else LOW, "high": end[1] if end else HIGH}


def _uri_rows(value: Any) -> Iterator[dict]:
    if isinstance(value, str) and value:
        yield {"value": value[:MAX_LEN]}


_EXTRACT = {"token": _token_rows, "string": _string_rows, "reference": _reference_rows, "date": _date_rows,
            "uri": _uri_rows}


@lru_cache(maxsize=512)
def _plan(rtype: str) -> tuple[tuple[SearchParam, tuple[tuple[tuple[Step, ...], tuple[str, ...]], ...]], ...]:
    """Per type: each indexed parameter with its paths, and per path the top-level keys of which one must be in
    the resource for the path to find anything. A resource holds a few of its type's ~30 parameters' elements;
    testing a key costs a dict lookup, walking a path that finds nothing costs generators (bench/ingest.py)."""
    plan = []
    for param in indexed_params(rtype):
        paths = []
        for steps in param.paths:
            first = steps[0] if steps else None
            if first is None:
                keys: tuple[str, ...] = ()      # the resource itself
            elif first.choice and len(steps) == 1:
                keys = tuple(first.name + suffix for suffix in CHOICE_SUFFIXES[param.type])
            else:
                keys = (first.name,)
            paths.append((steps, keys))
        if paths:
            plan.append((param, tuple(paths)))
    return tuple(plan)


def index_rows(resource: dict) -> list[tuple[str, dict]]:
    """(kind, row) for every indexed value of the resource; a row has `param` and the kind's value columns."""
    out: list[tuple[str, dict]] = []
    for param, paths in _plan(resource.get("resourceType", "")):
        extract = _EXTRACT[param.type]
        seen: set[tuple] | None = None
        for steps, keys in paths:
            if keys and not any(key in resource for key in keys):
                continue
            for value in _values(resource, steps, param.type):
                for row in extract(value):
                    if param.target_type and row.get("target_type") != param.target_type:
                        continue
                    key = tuple(row.values())
                    if seen is None:
                        seen = set()
                    if key not in seen:
                        seen.add(key)
                        out.append((param.type, {"param": param.name, **row}))
    return out


def write_index(conn: Connection, res_pk: int, resource: dict | None, patient_id: str | None) -> None:
    """Replace the resource's index rows (none when `resource` is None: deleted), in the caller's transaction."""
    delete_index(conn, [res_pk])
    if resource is not None:
        insert_index(conn, collect_rows(res_pk, resource, patient_id))


def delete_index(conn: Connection, res_pks: list[int]) -> None:
    """Remove the index rows of these resources (one statement per kind)."""
    if not res_pks:
        return
    for table in INDEX_TABLES.values():
        conn.execute(delete(table).where(table.c.res_pk.in_(res_pks)))


def collect_rows(res_pk: int, resource: dict, patient_id: str | None,
                 into: dict[str, list[dict]] | None = None) -> dict[str, list[dict]]:
    """The index rows of one resource by kind, added to `into`: a transaction inserts all its rows at once."""
    by_kind: dict[str, list[dict]] = {} if into is None else into
    rtype = resource["resourceType"]
    for kind, row in index_rows(resource):
        by_kind.setdefault(kind, []).append({"res_pk": res_pk, "res_type": rtype, "patient_id": patient_id, **row})
    return by_kind


def insert_index(conn: Connection, by_kind: dict[str, list[dict]]) -> None:
    """One bulk INSERT per kind (store.row_writer)."""
    for kind, rows in by_kind.items():
        row_writer.insert_rows(conn, INDEX_TABLES[kind], rows)
