"""FHIR search compiled to one SQL query per page, through the index tables (never a whole type in Python).

The most selective parameter drives the query (`pk IN (index lookup)`); the others filter its candidates with
correlated `EXISTS` on the index rows of one resource. Pages follow a keyset: the sort keys and then pk, which
never changes, so a write between two pages can neither skip nor repeat a row in the default order.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    and_,
    exists,
    false,
    func,
    or_,
    select,
    true,
)

from mappings.errors import InputError, Issue
from store.indexing import HIGH, LOW, stored_as
from store.schema import INDEX_TABLES, resources
from store.search_params import SearchParam, params_for, searchable_types
from store.search_terms import (
    SEARCH_MODIFIERS,
    TERMS,
    Term,
    chained_term,
    column_term,
    split_unescaped,
)

__all__ = ["SEARCHABLE", "SEARCH_MODIFIERS", "SearchResult", "match_rows", "search", "supported_parameters"]

SEARCHABLE = searchable_types()
DEFAULT_COUNT, MAX_COUNT = 50, 1000
MAX_VALUES, MAX_PARAMS = 100, 50
MAX_INCLUDED = 1000
PAGING = {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total"}
PASSED_THROUGH = {"_format", "_pretty"}   # the REST layer's business
SUMMARY_VALUES = {"true", "text", "data", "count", "false"}
TOTAL_VALUES = {"none", "estimate", "accurate"}


@dataclass
class SearchResult:
    rows: list[dict]
    included: list[dict]
    total: int | None
    next_cursor: str | None
    warnings: list[Issue]
    summary_count: bool
    elements: list[str] | None
    summary: str | None


@dataclass
class _Query:
    rtype: str
    terms: list[Term] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    sort: list[tuple[str, bool]] = field(default_factory=list)   # (parameter, descending)
    includes: list[tuple[str, str, str | None]] = field(default_factory=list)
    revincludes: list[tuple[str, str]] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None
    total: str | None = None
    warnings: list[Issue] = field(default_factory=list)
    fingerprint: list[tuple[str, str]] = field(default_factory=list)


def supported_parameters(rtype: str) -> dict[str, str]:
    """name -> type of every parameter served for the type (the CapabilityStatement's searchParam)."""
    return {name: p.type for name, p in sorted(params_for(rtype).items())}


def search(conn: Connection, rtype: str, params: list[tuple[str, str]], *, lenient: bool = False,
           cursor: str | None = None, patient: str | None = None) -> SearchResult:
    q = _parse(rtype, params, lenient, paging=True)
    q.fingerprint.append(("_compartment", patient or ""))
    r = resources.alias("r")
    where = _where(r, rtype, q.terms, patient)
    if q.summary == "count":
        counted = conn.execute(select(func.count()).select_from(r).where(where)).scalar_one()
        return SearchResult([], [], counted, None, q.warnings, True, None, None)
    keys = _sort_keys(r, q)
    after = _decode_cursor(cursor, q, keys) if cursor else None
    fetched = conn.execute(_page_query(q, r, where, keys, after)).all()
    page, more = fetched[: q.count], len(fetched) > q.count
    rows = [_row(x) for x in page]
    next_cursor = _encode_cursor(q, [*(getattr(page[-1], f"k{i}") for i in range(len(keys) - 1)), page[-1].pk]) \
        if more and page else None
    total: int | None = None
    if q.total == "accurate":
        total = conn.execute(select(func.count()).select_from(r).where(where)).scalar_one()
    elif not more and after is None:
        total = len(rows)   # the first page holds every match
    included = _included(conn, q, rows)
    return SearchResult(rows, included, total, next_cursor, q.warnings, False, q.elements, q.summary)


def page_statement(rtype: str, params: list[tuple[str, str]], patient: str | None = None) -> Select:
    """The SQL of a search's first page (for EXPLAIN in tests and benchmarks)."""
    q = _parse(rtype, params, lenient=False, paging=True)
    r = resources.alias("r")
    return _page_query(q, r, _where(r, rtype, q.terms, patient), _sort_keys(r, q), None)


def _page_query(q: _Query, r: FromClause, where: ColumnElement[bool], keys: list[tuple[Any, bool]],
                after: list[Any] | None) -> Select:
    page_where = and_(where, _after(keys, after)) if after else where
    columns = [r.c.pk, r.c.res_type, r.c.res_id, r.c.version, r.c.last_updated, r.c.body]
    return (select(*columns, *(k.label(f"k{i}") for i, (k, _) in enumerate(keys[:-1])))
            .where(page_where).order_by(*(k.desc() if d else k.asc() for k, d in keys)).limit(q.count + 1))


def match_rows(conn: Connection, rtype: str, params: list[tuple[str, str]], limit: int) -> list[dict]:
    """The first `limit` matches of a conditional interaction's criteria (no paging parameters)."""
    q = _parse(rtype, params, lenient=False, paging=False)
    r = resources.alias("r")
    query = (select(r.c.pk, r.c.res_type, r.c.res_id, r.c.version, r.c.last_updated, r.c.body)
             .where(_where(r, rtype, q.terms, None)).order_by(r.c.pk).limit(limit))
    return [_row(x) for x in conn.execute(query)]


def _row(x: Any) -> dict:
    return {"pk": x.pk, "res_type": x.res_type, "res_id": x.res_id, "version": x.version,
            "last_updated": x.last_updated, "body": x.body}


# -- parsing ---------------------------------------------------------------------------------------------------
def _fail(path: str, message: str, code: str = "not-supported") -> InputError:
    return InputError([Issue(path, message, code)], 400)


def _parse(rtype: str, params: list[tuple[str, str]], lenient: bool, paging: bool) -> _Query:
    q = _Query(rtype)
    if len(params) > MAX_PARAMS:
        raise _fail(f"{rtype}?", f"at most {MAX_PARAMS} search parameters", "too-costly")
    known = params_for(rtype)
    for name, value in params:
        path = f"{rtype}?{name}"
        if name in PASSED_THROUGH:
            continue
        if name in PAGING:
            if not paging:
                raise _fail(path, f"{name} has no meaning in conditional criteria", "invalid")
            _control(q, name, value, path)
            continue
        values = split_unescaped(value, ",")
        if len(values) > MAX_VALUES:
            raise _fail(path, f"at most {MAX_VALUES} values in one parameter", "too-costly")
        try:
            q.terms.append(_term(rtype, known, name, values, path))
        except _Unsupported as exc:
            if not lenient:
                raise _fail(path, str(exc)) from None
            q.warnings.append(Issue(path, f"ignored: {exc}", "not-supported", "warning"))
            continue
        q.fingerprint.append((name, value))
    q.fingerprint += [("_sort", ",".join(("-" if d else "") + s for s, d in q.sort))]
    return q


class _Unsupported(Exception):
    """An unknown parameter or modifier: a 400, or ignored and reported under Prefer: handling=lenient."""


def _split_modifier(name: str) -> tuple[str, str | None]:
    base, _, modifier = name.partition(":")
    return base, modifier or None


def _term(rtype: str, known: dict[str, SearchParam], name: str, values: list[str], path: str) -> Term:
    head, dot, tail = name.partition(".")
    base, modifier = _split_modifier(head)
    param = known.get(base)
    if param is None:
        raise _Unsupported(f"unknown search parameter {base!r} for {rtype}")
    if dot:
        term = _chain(param, modifier, tail, values, path)
        term.param, term.rtype = param.name, rtype
        return term
    _check_modifier(param, modifier)
    if param.column:
        return column_term(param, modifier, values, path)
    term = TERMS[param.type](param, modifier, values, path)   # a reference's modifier is None, missing or a Type
    term.param, term.rtype = param.name, rtype
    return term


def _check_modifier(param: SearchParam, modifier: str | None) -> None:
    if modifier is None:
        return
    allowed = SEARCH_MODIFIERS[param.type]
    if param.column:
        allowed = {"missing", "not"} if param.name == "_id" else {"missing"}
    if modifier in allowed:
        return
    if param.type == "reference" and _is_target(param, modifier):
        return
    raise _Unsupported(f"modifier :{modifier} is not supported on {param.type} parameter {param.name!r}")


def _is_target(param: SearchParam, rtype: str) -> bool:
    if not rtype[:1].isupper():
        return False
    return rtype in param.targets or "*" in param.targets or (not param.targets and rtype in SEARCHABLE)


def _chain(param: SearchParam, modifier: str | None, tail: str, values: list[str], path: str) -> Term:
    if "." in tail:
        raise _fail(path, "chains of more than one level are not supported")
    if param.type != "reference":
        raise _Unsupported(f"{param.name!r} is a {param.type} parameter: only references chain")
    if modifier is not None and not _is_target(param, modifier):
        raise _Unsupported(f"{modifier!r} is not a target type of {param.name!r}")
    targets = [modifier] if modifier else [t for t in param.targets if t != "*"]
    if param.target_type:
        targets = [param.target_type]
    inner_name, _ = _split_modifier(tail)
    inner: dict[str, Callable[[FromClause], ColumnElement[bool]]] = {}
    for target in targets:
        target_params = params_for(target)
        if inner_name not in target_params:
            continue
        term = _term(target, target_params, tail, values, path)
        inner[target] = _bound_where(target, term)
    if not inner:
        raise _Unsupported(f"no target type of {param.name!r} has a parameter {inner_name!r}")
    return chained_term(inner)


def _bound_where(rtype: str, term: Term) -> Callable[[FromClause], ColumnElement[bool]]:
    return lambda r2: _where(r2, rtype, [term], None)


def _control(q: _Query, name: str, value: str, path: str) -> None:
    if name == "_count":
        if not value.isdigit() or int(value) > MAX_COUNT:
            raise _fail(path, f"_count is a whole number from 0 to {MAX_COUNT}", "value")
        q.count = int(value)
    elif name == "_sort":
        q.sort = [_sort_item(q.rtype, item, path) for item in value.split(",")]
    elif name == "_include":
        q.includes.append(_include_item(q.rtype, value, path))
    elif name == "_revinclude":
        q.revincludes.append(_revinclude_item(value, path))
    elif name == "_summary":
        if value not in SUMMARY_VALUES:
            raise _fail(path, f"_summary is one of {', '.join(sorted(SUMMARY_VALUES))}", "value")
        q.summary = None if value == "false" else value
    elif name == "_elements":
        q.elements = [e.strip() for e in value.split(",") if e.strip()]
        if not q.elements or not all(e.replace("_", "").isalnum() for e in q.elements):
            raise _fail(path, "_elements is a comma list of element names", "value")
    elif name == "_total":
        if value not in TOTAL_VALUES:
            raise _fail(path, f"_total is one of {', '.join(sorted(TOTAL_VALUES))}", "value")
        q.total = value


def _sort_item(rtype: str, item: str, path: str) -> tuple[str, bool]:
    desc = item.startswith("-")
    name = item[1:] if desc else item
    param = params_for(rtype).get(name)
    if name != "_id" and (param is None or param.type != "date"):
        raise _fail(path, f"cannot sort on {name!r}: sort on a date parameter, _lastUpdated or _id")
    return name, desc


def _include_item(rtype: str, value: str, path: str) -> tuple[str, str, str | None]:
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] != rtype:
        raise _fail(path, f"_include is {rtype}:parameter[:TargetType], not {value!r}")
    if parts[1] != "*":
        param = params_for(rtype).get(parts[1])
        if param is None or param.type != "reference":
            raise _fail(path, f"{parts[1]!r} is not a reference parameter of {rtype}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _revinclude_item(value: str, path: str) -> tuple[str, str]:
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise _fail(path, f"_revinclude is Type:parameter, not {value!r}")
    param = params_for(parts[0]).get(parts[1])
    if parts[1] != "*" and (param is None or param.type != "reference"):
        raise _fail(path, f"{parts[1]!r} is not a reference parameter of {parts[0]}")
    return parts[0], parts[1]


# -- SQL -------------------------------------------------------------------------------------------------------
def _where(r: FromClause, rtype: str | None, terms: list[Term], patient: str | None) -> ColumnElement[bool]:
    """The match condition on resources row `r`: the best index term drives, the rest filter by EXISTS."""
    clauses: list[ColumnElement[bool]] = [r.c.deleted == false()]
    ranked = sorted(terms, key=lambda t: t.rank)
    direct = any(t.table is None and t.rank == 0 for t in ranked)
    driver = None if direct else next((t for t in ranked if t.table is not None and not t.negate), None)
    # The driver's index rows carry the type: repeating it on resources would let SQLite walk the whole type.
    if rtype is not None and driver is None:
        clauses.append(r.c.res_type == rtype)
    if patient is not None:
        clauses.append(r.c.patient_id == patient)
    for term in ranked:
        if term.table is None:
            assert term.on_row is not None
            clauses.append(term.on_row(r))
            continue
        t = term.table
        scoped = [_rows_of(t, term.rtype or rtype, [_param_name(term)]), term.where]
        if term is driver:
            scope = [t.c.res_type == rtype] if rtype is not None else []
            clauses.append(r.c.pk.in_(select(t.c.res_pk).where(*scope, *scoped)))
        else:
            found = exists().where(t.c.res_pk == r.c.pk, *scoped)
            clauses.append(~found if term.negate else found)
    return and_(*clauses)


def _param_name(term: Term) -> str:
    assert term.param is not None
    return term.param


def _rows_of(t: FromClause, rtype: str | None, names: list[str]) -> ColumnElement[bool]:
    """The index rows (of table `t`) of the type's parameters `names`: by their `param`, and, for a parameter
    searched through another's rows, their target type (store.indexing.stored_as)."""
    anywhere: set[str] = set()
    restricted: dict[str, set[str]] = {}
    for name in names:
        stored, target_type = stored_as(rtype, name) if rtype is not None else ((name,), None)
        if target_type is None or "target_type" not in t.c:
            anywhere.update(stored)
        else:
            restricted.setdefault(target_type, set()).update(stored)
    alternatives = [_param_in(t, anywhere)] if anywhere else []
    alternatives += [and_(_param_in(t, stored), t.c.target_type == target_type)
                     for target_type, stored in sorted(restricted.items()) if not stored <= anywhere]
    return alternatives[0] if len(alternatives) == 1 else or_(*alternatives)


def _param_in(t: FromClause, names: set[str]) -> ColumnElement[bool]:
    return t.c.param == next(iter(names)) if len(names) == 1 else t.c.param.in_(sorted(names))


def _sort_keys(r: FromClause, q: _Query) -> list[tuple[Any, bool]]:
    keys: list[tuple[Any, bool]] = []
    for name, desc in q.sort:
        if name == "_lastUpdated":
            keys.append((r.c.last_updated, desc))
        elif name == "_id":
            keys.append((r.c.res_id, desc))
        else:
            d = INDEX_TABLES["date"].alias()
            # a resource without the date sorts last either way
            bound = func.max(d.c.high) if desc else func.min(d.c.low)
            value = select(bound).where(d.c.res_pk == r.c.pk, _rows_of(d, q.rtype, [name])).scalar_subquery()
            keys.append((func.coalesce(value, LOW - 1 if desc else HIGH + 1), desc))
    keys.append((r.c.pk, False))
    return keys


def _after(keys: list[tuple[Any, bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor's position in the (mixed direction) key order."""
    alternatives = []
    for i, (key, desc) in enumerate(keys):
        equal = [k == v for (k, _), v in zip(keys[:i], values[:i])]
        alternatives.append(and_(*equal, key < values[i] if desc else key > values[i]))
    return or_(*alternatives)


def _fingerprint(q: _Query) -> str:
    text = json.dumps([q.rtype, q.fingerprint], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_cursor(q: _Query, values: list[Any]) -> str:
    doc = json.dumps({"q": _fingerprint(q), "k": values}, separators=(",", ":"))
    return base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, q: _Query, keys: list[tuple[Any, bool]]) -> list[Any]:
    bad = _fail(f"{q.rtype}?_cursor", "the paging cursor is not valid for this search (start again from page 1)",
                "invalid")
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(doc, dict) or doc.get("q") != _fingerprint(q) or not isinstance(doc.get("k"), list):
        raise bad
    values = doc["k"]
    if len(values) != len(keys):
        raise bad
    for (name, _), value in zip([*q.sort, ("_pk", False)], values):
        wanted = str if name == "_id" else int
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise bad
    return values


# -- _include / _revinclude ------------------------------------------------------------------------------------
def _included(conn: Connection, q: _Query, rows: list[dict]) -> list[dict]:
    if not rows or not (q.includes or q.revincludes):
        return []
    seen = {row["pk"] for row in rows}
    out: list[dict] = []
    # MAX_INCLUDED bounds a page's included resources in total, not per item (50 items once gave 50,000), and a
    # repeated item runs once. dict.fromkeys keeps the order in which the client named them.
    for query in [*(_include_query(q, rows, i) for i in dict.fromkeys(q.includes)),
                  *(_revinclude_query(q, rows, i) for i in dict.fromkeys(q.revincludes))]:
        # One row more than room is left (and the page's own rows, which are skipped): tells whether any was cut.
        for x in conn.execute(query.limit(MAX_INCLUDED - len(out) + len(rows) + 1)):
            if x.pk in seen:
                continue
            if len(out) == MAX_INCLUDED:
                q.warnings.append(Issue("?_include", f"included resources cut at {MAX_INCLUDED} for this page: ask for "
                                        "fewer matches per page (_count) to get the rest", "too-costly", "warning"))
                return out
            seen.add(x.pk)
            out.append(_row(x))
    return out


def _reference_params(rtype: str, name: str) -> list[str]:
    if name != "*":
        return [name]
    return [n for n, p in params_for(rtype).items() if p.type == "reference"]


def _include_query(q: _Query, rows: list[dict], item: tuple[str, str, str | None]) -> Any:
    rtype, name, target = item
    ir, r2 = INDEX_TABLES["reference"].alias(), resources.alias()
    conditions: list[ColumnElement[bool]] = [ir.c.res_pk.in_([row["pk"] for row in rows]),
                                             _rows_of(ir, rtype, _reference_params(rtype, name))]
    if target:
        conditions.append(ir.c.target_type == target)
    return (select(r2.c.pk, r2.c.res_type, r2.c.res_id, r2.c.version, r2.c.last_updated, r2.c.body).distinct()
            .join(ir, and_(r2.c.res_type == ir.c.target_type, r2.c.res_id == ir.c.target_id))
            .where(*conditions, r2.c.deleted == false()).order_by(r2.c.pk))


def _revinclude_query(q: _Query, rows: list[dict], item: tuple[str, str]) -> Any:
    rtype, name = item
    ir, r2 = INDEX_TABLES["reference"].alias(), resources.alias()
    return (select(r2.c.pk, r2.c.res_type, r2.c.res_id, r2.c.version, r2.c.last_updated, r2.c.body).distinct()
            .join(ir, r2.c.pk == ir.c.res_pk)
            .where(ir.c.target_id.in_([row["res_id"] for row in rows]), ir.c.target_type == q.rtype,
                   _rows_of(ir, rtype, _reference_params(rtype, name)), ir.c.res_type == rtype, r2.c.deleted == false(),
                   true()).order_by(r2.c.pk))
