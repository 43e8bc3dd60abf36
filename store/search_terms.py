"""One search parameter with its modifier and OR'd values, compiled to a condition on the index tables.

A Term names the index table it reads and a condition over that table's columns; store/search.py decides
whether it drives the query (`pk IN (...)`) or filters candidates (`EXISTS`, `NOT EXISTS`). Every value is a
bound parameter.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    and_,
    false,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from mappings.errors import InputError, Issue
from store.indexing import _REF, date_range, normalise
from store.schema import INDEX_TABLES, resources
from store.search_params import SearchParam

SEARCH_MODIFIERS: dict[str, set[str]] = {
    "token": {"missing", "not", "text"},
    "string": {"missing", "exact", "contains"},
    "reference": {"missing", "[type]"},   # [type]: subject:Patient=123
    "date": {"missing"},
    "uri": {"missing"},
}
# Token parameters over small required value sets (status, gender...): a poor driver, a good filter.
FEW_VALUES = {"status", "intent", "gender", "active", "clinical-status", "verification-status", "category", "class",
              "priority", "address-use"}
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass
class Term:
    """A condition on `table` (an alias of an index table), or on the resources row when table is None."""
    rank: int                           # lower: expected to match fewer rows (the query's driver)
    table: FromClause | None
    where: ColumnElement[bool]
    negate: bool = False                # the resource must have NO row matching (:not, :missing=true)
    on_row: Callable[[FromClause], ColumnElement[bool]] | None = None   # for table None: condition on resources
    param: str | None = None            # the parameter (set by the parser); its rows: search._rows_of
    rtype: str | None = None            # the type whose parameter it is (set by the parser)


def bad_value(path: str, message: str) -> InputError:
    return InputError([Issue(path, message, "value")], 400)


def split_unescaped(value: str, sep: str) -> list[str]:
    r"""Split on `sep` where it is not escaped with a backslash (search.html#escaping), then unescape."""
    parts = re.split(r"(?<!\\)" + re.escape(sep), value)
    return parts


def unescape(value: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", value)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class StartsWith(ColumnElement[bool]):
    """`column` begins with `prefix`, in a form each engine answers from a b-tree index.

    SQLite's LIKE ignores case and so cannot use a BINARY index; GLOB can, and the indexed values are already
    lower case. PostgreSQL uses LIKE 'p%' with an index in the C collation or with varchar_pattern_ops.
    Both patterns are bound parameters made here, so the statement cache sees them.
    """
    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True   # a predicate: no "= 1" on engines without a boolean type
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's visitor protocol("column", InternalTraversal.dp_clauseelement),
                           ("like_pattern", InternalTraversal.dp_clauseelement),
                           ("glob_pattern", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[str], prefix: str):
        self.column = column
        self.like_pattern = literal(_like_escape(prefix) + "%")
        self.glob_pattern = literal(re.sub(r"([*?\[])", r"[\1]", prefix) + "*")


@compiles(StartsWith)
def _starts_with_like(element: StartsWith, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column.like(element.like_pattern, escape="\\"), **kw)


@compiles(StartsWith, "sqlite")
def _starts_with_glob(element: StartsWith, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} GLOB {compiler.process(element.glob_pattern, **kw)}"


def _missing(values: list[str], path: str) -> bool:
    if len(values) != 1 or values[0] not in ("true", "false"):
        raise bad_value(path, ":missing takes true or false")
    return values[0] == "true"


def _exists_term(table: FromClause, missing: bool) -> Term:
    return Term(8, table, true(), negate=missing)


# -- token -----------------------------------------------------------------------------------------------------
def token_term(param: SearchParam, modifier: str | None, values: list[str], path: str) -> Term:
    t = INDEX_TABLES["token"].alias()
    if modifier == "missing":
        return _exists_term(t, _missing(values, path))
    if modifier == "text":
        conditions = []
        for value in values:
            norm = normalise(unescape(value))
            if not norm:
                raise bad_value(path, "empty text")
            conditions.append(or_(t.c.text.like(_like_escape(norm) + "%", escape="\\"),
                                  t.c.text.like("% " + _like_escape(norm) + "%", escape="\\")))
        # Said outright: the index of display texts holds only rows that have one (store/schema.py, where_not_null),
        # and SQLite's planner does not read a LIKE as NOT NULL.
        return Term(5, t, and_(t.c.text.isnot(None), or_(*conditions)))
    where = or_(*(_token_match(t, value, path) for value in values))
    return Term(7 if param.name in FEW_VALUES else 2, t, where, negate=modifier == "not")


def _token_match(t: FromClause, value: str, path: str) -> ColumnElement[bool]:
    parts = [unescape(p) for p in split_unescaped(value, "|")]
    if len(parts) == 1:
        if not parts[0]:
            raise bad_value(path, "empty token")
        return t.c.code == parts[0]
    if len(parts) != 2 or parts == ["", ""]:
        raise bad_value(path, f"a token is code, system|code, |code or system|, not {value!r}")
    system, code = parts
    if not code:
        return t.c.system == system
    return and_(t.c.code == code, t.c.system == system)


# -- string, uri -----------------------------------------------------------------------------------------------
def string_term(param: SearchParam, modifier: str | None, values: list[str], path: str) -> Term:
    t = INDEX_TABLES["string"].alias()
    if modifier == "missing":
        return _exists_term(t, _missing(values, path))
    conditions = []
    for raw in values:
        value = unescape(raw)
        if modifier == "exact":
            conditions.append(t.c.value_exact == value[:255])
            continue
        norm = normalise(value)
        if not norm:
            raise bad_value(path, "empty string")
        if modifier == "contains":
            conditions.append(t.c.value_norm.like("%" + _like_escape(norm) + "%", escape="\\"))
        else:
            conditions.append(StartsWith(t.c.value_norm, norm))
    return Term(3 if modifier == "exact" else 4, t, or_(*conditions))


def uri_term(param: SearchParam, modifier: str | None, values: list[str], path: str) -> Term:
    t = INDEX_TABLES["uri"].alias()
    if modifier == "missing":
        return _exists_term(t, _missing(values, path))
    return Term(3, t, t.c.value.in_([unescape(v) for v in values]))


# -- reference -------------------------------------------------------------------------------------------------
def reference_term(param: SearchParam, modifier: str | None, values: list[str], path: str) -> Term:
    t = INDEX_TABLES["reference"].alias()
    if modifier == "missing":
        return _exists_term(t, _missing(values, path))
    return Term(1, t, or_(*(_reference_match(t, unescape(v), modifier, path) for v in values)))


def _reference_match(t: FromClause, value: str, type_modifier: str | None, path: str) -> ColumnElement[bool]:
    if not value:
        raise bad_value(path, "empty reference")
    if value.startswith("urn:"):
        return t.c.target_url == value
    m = _REF.match(value)
    if m is None:
        if "/" in value or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
            return t.c.target_url == value
        id_match = t.c.target_id == value
        return and_(id_match, t.c.target_type == type_modifier) if type_modifier else id_match
    if type_modifier and m["type"] != type_modifier:
        raise bad_value(path, f"{value!r} is not a {type_modifier} reference")
    by_id = and_(t.c.target_id == m["id"], t.c.target_type == m["type"])
    return or_(by_id, t.c.target_url == value) if m["base"] else by_id


# -- date ------------------------------------------------------------------------------------------------------
def parse_date_value(value: str, path: str) -> tuple[str, int, int]:
    prefix, text = "eq", value
    if value[:2].isalpha():
        prefix, text = value[:2], value[2:]
        if prefix not in DATE_PREFIXES:
            raise bad_value(path, f"unknown date prefix {prefix!r} (one of {', '.join(DATE_PREFIXES)})")
    span = date_range(text)
    if span is None:
        raise bad_value(path, f"{value!r} is not a FHIR date, dateTime or instant")
    return prefix, span[0], span[1]


def date_condition(prefix: str, lo: int, hi: int, low: Any, high: Any) -> ColumnElement[bool]:
    """R4 search.html "date": the target range [low, high] against the search range [lo, hi]."""
    contained = and_(low >= lo, high <= hi)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return or_(low < lo, high > hi)
    if prefix == "gt":
        return high > hi
    if prefix == "lt":
        return low < lo
    if prefix == "ge":
        return or_(high > hi, contained)
    if prefix == "le":
        return or_(low < lo, contained)
    if prefix == "sa":
        return low > hi
    if prefix == "eb":
        return high < lo
    # ap: overlap with the search range widened by 10% of its distance from now (as HAPI does).
    now = int(time.time() * 1000)
    slack = max(abs(now - lo), abs(now - hi)) // 10
    return and_(low <= hi + slack, high >= lo - slack)


def date_term(param: SearchParam, modifier: str | None, values: list[str], path: str) -> Term:
    t = INDEX_TABLES["date"].alias()
    if modifier == "missing":
        return _exists_term(t, _missing(values, path))
    conditions = [date_condition(*parse_date_value(v, path), t.c.low, t.c.high) for v in values]
    return Term(6, t, or_(*conditions))


# -- _id, _lastUpdated (columns of resources) ------------------------------------------------------------------
def column_term(param: SearchParam, modifier: str | None, values: list[str], path: str) -> Term:
    if modifier == "missing":
        present = not _missing(values, path)   # every resource has an id and a lastUpdated
        return Term(9, None, true(), on_row=lambda r: true() if present else false())
    if param.name == "_id":
        ids = [unescape(v) for v in values]
        if modifier == "not":
            return Term(9, None, true(), on_row=lambda r: r.c.res_id.not_in(ids))
        return Term(0, None, true(), on_row=lambda r: r.c.res_id.in_(ids))
    spans = [parse_date_value(v, path) for v in values]
    return Term(7, None, true(),
                on_row=lambda r: or_(*(date_condition(*s, r.c.last_updated, r.c.last_updated) for s in spans)))


TERMS = {"token": token_term, "string": string_term, "uri": uri_term, "reference": reference_term, "date": date_term}


def chained_term(inner: dict[str, Callable[[FromClause], ColumnElement[bool]]]) -> Term:
    """`subject.identifier=x`: references to a resource of a target type (the keys) whose own index matches;
    `inner[type](r2)` is the whole condition on that target's resources row."""
    t = INDEX_TABLES["reference"].alias()
    alternatives = []
    for rtype, condition in inner.items():
        r2 = resources.alias()
        matching = select(r2.c.res_id).where(condition(r2))   # the condition scopes type and deletion
        alternatives.append(and_(t.c.target_type == rtype, t.c.target_id.in_(matching)))
    return Term(3, t, or_(*alternatives))
