"""Search-index rows of a resource, extracted from its JSON by the paths of mappings/search_parameters.json.

Pure Python over dicts (no fhir.resources models): this runs inside every write's transaction.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, delete

from store import row_writer
from store.schema import INDEX_TABLES
from store.search_params import CHOICE_SUFFIXES, indexed_params

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


# The value columns of each kind's table, in table order (after res_pk, res_type, param, patient_id).
VALUE_COLUMNS = {"token": ("system", "code", "text"), "string": ("value_norm", "value_exact"),
                 "reference": ("target_type", "target_id", "target_url"), "date": ("low", "high"), "uri": ("value",)}
Values = tuple  # one row's value columns, in VALUE_COLUMNS order


def _flatten(value: Any, out: list) -> None:
    if isinstance(value, list):
        for item in value:
            _flatten(item, out)
    elif value is not None:  # an element that is null finds nothing (no extractor takes None)
        out.append(value)


def _values(resource: dict, steps: tuple[tuple[str, ...], ...]) -> list:
    """Every value at the path, arrays flattened; each step is the keys it may be found under (the choice types
    of a final [x] step fitting the parameter's type, in CHOICE_SUFFIXES order). Level by level with lists: paths
    are 1-3 steps, and a generator per node cost more than the rows it found."""
    nodes: list = [resource]
    for names in steps:
        found: list = []
        for node in nodes:
            if isinstance(node, dict):
                for name in names:
                    if name in node:
                        _flatten(node[name], found)
        nodes = found
        if not nodes:
            break
    return nodes


def _coding_row(coding: dict, fallback_text: str | None) -> Values:
    text = coding.get("display") if isinstance(coding.get("display"), str) else fallback_text
    return (str(coding.get("system", ""))[:MAX_LEN], str(coding.get("code", ""))[:MAX_LEN], normalise(text) if text else None)


def _token_rows(value: Any, out: list[Values]) -> None:
    if isinstance(value, bool):
        out.append(("", "true" if value else "false", None))
    elif isinstance(value, str):
        out.append(("", value[:MAX_LEN], None))
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value):
            _concept_rows(value, out)
        elif "value" in value:   # Identifier
            type_text = (value.get("type") or {}).get("text")
            out.append((str(value.get("system", ""))[:MAX_LEN], str(value["value"])[:MAX_LEN],
                        normalise(type_text) if isinstance(type_text, str) else None))
        elif "code" in value:    # Coding
            out.append(_coding_row(value, None))


def _concept_rows(concept: dict, out: list[Values]) -> None:
    text = concept.get("text") if isinstance(concept.get("text"), str) else None
    rows = [_coding_row(c, text) for c in concept.get("coding", []) if isinstance(c, dict)]
    out.extend(rows)
    # CodeableConcept.text that no display repeats gets its own row, so that :text finds it.
    if text:
        norm = normalise(text)
        if all(r[2] != norm for r in rows):
            out.append(("", "", norm))


_NAME_PARTS = ("family", "given", "text", "prefix", "suffix")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _string_rows(value: Any, out: list[Values]) -> None:
    if isinstance(value, str):
        if value.strip():
            out.append((normalise(value), value[:MAX_LEN]))
    elif isinstance(value, dict):
        parts = _NAME_PARTS if any(k in value for k in ("family", "given", "prefix", "suffix")) else _ADDRESS_PARTS
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str):
                    _string_rows(text, out)


def _reference_rows(value: Any, out: list[Values]) -> None:
    ref = value.get("reference") if isinstance(value, dict) else value   # a canonical is a bare string
    if not isinstance(ref, str) or not ref or ref.startswith("#"):
        return
    m = _REF.match(ref) if not ref.startswith("urn:") else None
    if m is None:
        out.append((None, None, ref[:MAX_LEN]))
    else:
        out.append((m["type"], m["id"], ref[:MAX_LEN] if m["base"] else None))


_date_range = lru_cache(maxsize=4096)(date_range)  # the times of a record repeat (one visit's labs share one)


def _date_rows(value: Any, out: list[Values]) -> None:
    if isinstance(value, str):
        span = _date_range(value)
        if span:
            out.append(span)
    elif isinstance(value, dict) and ("start" in value or "end" in value):   # Period
        start = _date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = _date_range(value["end"]) if isinstance(value.get("end"), str) else None
        if start or end:
            out.append((start[0] if start else LOW, end[1] if end else HIGH))


def _uri_rows(value: Any, out: list[Values]) -> None:
    if isinstance(value, str) and value:
        out.append((value[:MAX_LEN],))


_EXTRACT = {"token": _token_rows, "string": _string_rows, "reference": _reference_rows, "date": _date_rows,
            "uri": _uri_rows}

@dataclass(frozen=True)
class _TypePlan:
    """Per type: the distinct (path, kind) pairs its parameters read (`paths`, each path as the keys of its steps),
    the parameters that store rows (name, kind, target type, the slots in `paths` they store rows from), and which
    paths and parameters a resource's top-level keys can reach: a resource holds a few of its type's ~30
    parameters' elements, so the work starts from the resource's own keys. `stored_as`: per parameter, the
    parameters under whose name its rows are stored and the target type they must have (see _plan)."""
    paths: tuple[tuple[tuple[tuple[str, ...], ...], str], ...]
    params: tuple[tuple[str, str, str | None, tuple[int, ...]], ...]
    by_key: dict[str, tuple[int, ...]]        # top-level key -> the slots of the paths that start there
    always: tuple[int, ...]                   # paths that start at the resource itself
    params_of: tuple[tuple[int, ...], ...]    # per slot: the parameters that store its rows
    stored_as: dict[str, tuple[tuple[str, ...], str | None]]


@lru_cache(maxsize=512)
def _plan(rtype: str) -> _TypePlan:
    """Parameters that share a path (subject and patient, code and combo-code) share its extraction: each
    (path, kind) is walked at most once per resource. They share its rows too: when a parameter without a target
    type reads exactly one path (subject: Observation.subject), that path's rows are stored once, under its name,
    and every other parameter reading the path (patient: Observation.subject.where(resolve() is Patient),
    combo-code: Observation.code | Observation.component.code) is searched through them, restricted to its target
    type; they are the rows it stored itself before, so every search answers as before, with ~25% fewer index rows
    to write (bench/ingest.py). Rows an older version wrote under the other name are not read any more (the
    resource's own rows are there too) and go at its next write."""
    slots: dict[tuple[tuple[tuple[str, ...], ...], str], int] = {}
    paths: list[tuple[tuple[tuple[str, ...], ...], str]] = []
    read: list[tuple[str, str, str | None, tuple[int, ...]]] = []
    for param in indexed_params(rtype):
        used = []
        for steps in param.paths:
            names = tuple(tuple(s.name + x for x in CHOICE_SUFFIXES[param.type]) if s.choice else (s.name,) for s in steps)
            if (names, param.type) not in slots:
                slots[(names, param.type)] = len(paths)
                paths.append((names, param.type))
            used.append(slots[(names, param.type)])
        if used:
            read.append((param.name, param.type, param.target_type, tuple(used)))
    owner: dict[int, str] = {}   # slot -> the parameter storing its rows for every parameter that reads it
    for name, _, target_type, reads in read:
        if target_type is None and len(reads) == 1:
            owner.setdefault(reads[0], name)
    params = []
    stored_as: dict[str, tuple[tuple[str, ...], str | None]] = {}
    for name, kind, target_type, reads in read:
        own = tuple(slot for slot in reads if owner.get(slot, name) == name)
        if own:
            params.append((name, kind, target_type, own))
        stored_as[name] = (tuple(sorted({owner.get(slot, name) for slot in reads})), target_type)
    by_key: dict[str, list[int]] = {}
    always = []
    for slot, (names, _) in enumerate(paths):
        if not names:
            always.append(slot)
        for key in names[0] if names else ():
            by_key.setdefault(key, []).append(slot)
    params_of = tuple(tuple(i for i, (_, _, _, used) in enumerate(params) if slot in used) for slot in range(len(paths)))
    return _TypePlan(tuple(paths), tuple(params), {k: tuple(v) for k, v in by_key.items()}, tuple(always), params_of,
                     stored_as)


def stored_as(rtype: str, name: str) -> tuple[tuple[str, ...], str | None]:
    """The `param` values of the index rows that answer the type's parameter `name`, and the target type those
    rows must have (a reference parameter with one, searched through another's rows); (name,), None for a
    parameter this store does not index."""
    return _plan(rtype).stored_as.get(name, ((name,), None))


@dataclass(frozen=True)
class _Shape:
    """What _extract does for resources of one type with one set of top-level keys (a source writes its resources
    of a type alike, so a transaction has a few shapes): the paths to walk, in slot order, and the parameters they
    can reach, in definition order, each with the slots it takes rows from and whether it keeps only rows of a
    target type. Found once per shape instead of once per resource (~25% of the extraction, bench/ingest.py)."""
    walks: tuple[tuple[int, tuple[tuple[str, ...], ...], Any], ...]        # (slot, path, the kind's extractor)
    params: tuple[tuple[str, str, str | None, tuple[int, ...]], ...]     # (name, kind, target type, slots)


@lru_cache(maxsize=4096)
def _shape(rtype: str, keys: tuple[str, ...]) -> _Shape:
    plan = _plan(rtype)
    slots = sorted({*plan.always, *(slot for key in keys if key in plan.by_key for slot in plan.by_key[key])})
    walks = tuple((slot, plan.paths[slot][0], _EXTRACT[plan.paths[slot][1]]) for slot in slots)
    wanted = sorted({index for slot in slots for index in plan.params_of[slot]})
    return _Shape(walks, tuple(plan.params[index] for index in wanted))


def _extract(resource: dict) -> list[tuple[str, str, Values]]:
    """(kind, parameter, value columns) of every index row of the resource, parameters in definition order,
    each parameter's rows without repeats (rows of a shared path under its owner's name only, see _plan)."""
    shape = _shape(resource.get("resourceType", ""), tuple(resource))
    found: dict[int, list[Values]] = {}
    for slot, names, extract in shape.walks:
        rows: list[Values] = []
        for value in _values(resource, names):
            extract(value, rows)
        if rows:
            found[slot] = rows
    out: list[tuple[str, str, Values]] = []
    if not found:
        return out
    for name, kind, target_type, used in shape.params:
        if len(used) == 1 and target_type is None:   # the common case: one path, every row it gave
            got = found.get(used[0])
            if got is None:
                continue
            if len(got) == 1:
                out.append((kind, name, got[0]))
                continue
        seen: set[Values] = set()
        for slot in used:
            for row in found.get(slot, ()):
                if target_type and row[0] != target_type:   # a reference row: (target_type, target_id, target_url)
                    continue
                if row not in seen:
                    seen.add(row)
                    out.append((kind, name, row))
    return out


def index_rows(resource: dict) -> list[tuple[str, dict]]:
    """(kind, row) for every indexed value of the resource; a row has `param` and the kind's value columns."""
    return [(kind, {"param": name, **dict(zip(VALUE_COLUMNS[kind], row))}) for kind, name, row in _extract(resource)]


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
                 into: dict[str, list[tuple]] | None = None) -> dict[str, list[tuple]]:
    """The index rows of one resource by kind, as tuples in table column order, added to `into`: a transaction
    inserts all its rows at once, and tuples go to the driver as they are (no dict per row)."""
    by_kind: dict[str, list[tuple]] = {} if into is None else into
    rtype = resource["resourceType"]
    for kind, name, row in _extract(resource):
        rows = by_kind.get(kind)
        if rows is None:
            rows = by_kind[kind] = []
        rows.append((res_pk, rtype, name, patient_id, *row))
    return by_kind


def insert_index(conn: Connection, by_kind: dict[str, list[tuple]]) -> None:
    """One bulk INSERT per kind (store.row_writer)."""
    for kind, rows in by_kind.items():
        table = INDEX_TABLES[kind]
        row_writer.insert_tuples(conn, table, _COLUMNS[kind], rows)


_COLUMNS = {kind: ("res_pk", "res_type", "param", "patient_id", *VALUE_COLUMNS[kind]) for kind in VALUE_COLUMNS}
