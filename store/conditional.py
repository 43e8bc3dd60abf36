"""Conditional criteria matched together: many `identifier=system|value` criteria in one indexed query.

Conditional creates, updates and deletes and conditional references each search. A transaction of 500 entries
naming identifiers made 500 queries (and on PostgreSQL 500 advisory-lock round trips). The one common shape,
a single `identifier` token with a system and a value, is looked up here for all of a transaction's criteria at
once, with store.search's semantics for it: the `identifier` token rows of live resources of the type, code and
system equal. Every other shape goes to store.search.match_rows, one by one, as before.

`References` keeps what a transaction's conditional references resolved to, and forgets an entry as soon as a
write of the transaction could change its answer (a resource of the criterion's type carrying its identifier,
or the matched resource itself): a second match written after the first lookup is then found, and the
reference fails with 412 as R4 says, while a transaction (or an import chunk) naming the same Practitioner in
every Encounter still searches once.
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, false, or_, select

from mappings.errors import InputError
from store.indexing import MAX_LEN, index_rows
from store.schema import idx_token, resources
from store.search_params import params_for

Criterion = tuple[str, str, str]       # (resource type, identifier system, identifier value)
CHUNK = 400                            # values per statement (SQLite allows 32,766 bound parameters)
MULTIPLE = 2                           # matches worth knowing: none, one, several


def lock_name(rtype: str, pairs: Iterable[tuple[str, str]]) -> str:
    """The advisory-lock name of a conditional interaction's criteria (order of the parameters ignored)."""
    return f"conditional:{rtype}?" + "&".join(f"{k}={v}" for k, v in sorted(pairs))


def identifier_criterion(rtype: str, pairs: list[tuple[str, str]]) -> Criterion | None:
    """(type, system, value) when the criteria are exactly one `identifier=system|value` with nothing that
    store.search would read differently (escapes, OR lists, an empty part, a value past the index width)."""
    if len(pairs) != 1 or pairs[0][0] != "identifier":
        return None
    value = pairs[0][1]
    if "\\" in value or "," in value or value.count("|") != 1:
        return None
    system, code = value.split("|")
    if not system or not code or len(system) > MAX_LEN or len(code) > MAX_LEN:
        return None
    param = params_for(rtype).get("identifier")
    if param is None or param.type != "token" or param.column:
        return None
    return rtype, system, code


def match_identifiers(conn: Connection, wanted: Iterable[Criterion]) -> dict[Criterion, list[str]]:
    """Per criterion the ids of the first MULTIPLE live resources (pk order) carrying that identifier."""
    found: dict[Criterion, dict[int, str]] = {w: {} for w in wanted}
    by_type: dict[str, set[str]] = {}
    for rtype, _, code in found:
        by_type.setdefault(rtype, set()).add(code)
    groups = [(rtype, sorted(codes)[i:i + CHUNK]) for rtype, codes in sorted(by_type.items())
              for i in range(0, len(codes), CHUNK)]
    for i in range(0, len(groups), 8):
        params: dict = {}
        for k, (rtype, codes) in enumerate(groups[i:i + 8]):
            params[f"t{k}"], params[f"c{k}"] = rtype, codes
        for row in conn.execute(_identifier_query(len(groups[i:i + 8])), params):
            hits = found.get((row.res_type, row.system, row.code))
            if hits is not None:
                hits[row.pk] = row.res_id
    return {w: [hits[pk] for pk in sorted(hits)[:MULTIPLE]] for w, hits in found.items()}


def in_bound(column: ColumnElement, name: str) -> ColumnElement[bool]:
    """`column IN (the list bound as name)`, for a statement built once (an expanding IN). Not `= ANY(array)` on
    PostgreSQL: the SQL text would stay the same, psycopg would prepare it, and the generic plan of an OR of
    such terms ran twice as long as planning and running the expanded IN (bench/ingest.py)."""
    return column.in_(bindparam(name, expanding=True))


@lru_cache(maxsize=None)
def _identifier_query(groups: int) -> Select:
    """The identifier rows of live resources, `type = T AND code IN (...)` per group: built once per number of
    groups, types and codes bound (building the statement per call cost more than running it)."""
    t, r = idx_token, resources
    return (select(t.c.res_type, t.c.system, t.c.code, r.c.pk, r.c.res_id)
            .join(r, r.c.pk == t.c.res_pk)
            .where(t.c.param == "identifier", r.c.deleted == false(),
                   or_(*(and_(t.c.res_type == bindparam(f"t{k}"), in_bound(t.c.code, f"c{k}"))
                         for k in range(groups)))))


def is_conditional(ref: str) -> bool:
    return "?" in ref and not ref.startswith(("http:", "https:", "urn:"))


class References:
    """Conditional references (`Type?criteria`) of one write transaction: resolved in one go, forgotten when a
    write of the transaction could change the answer. Values: the matching ids (at most MULTIPLE), or the
    InputError of criteria that cannot be searched."""

    def __init__(self) -> None:
        self.known: dict[str, list[str] | InputError] = {}
        self._criteria: dict[str, Criterion | None] = {}
        self._by_type: dict[str, set[str]] = {}

    def missing(self, refs: Iterable[str]) -> list[str]:
        return sorted({ref for ref in refs if ref not in self.known})

    def lock_names(self, refs: Iterable[str]) -> list[str]:
        names = []
        for ref in refs:
            rtype, _, query = ref.partition("?")
            names.append(lock_name(rtype, parse_qsl(query, keep_blank_values=True)))
        return names

    def resolve(self, conn: Connection, refs: list[str]) -> None:
        """Search each of refs (they must be is_conditional), identifier criteria in one query."""
        from store.search import match_rows

        fast: dict[Criterion, list[str]] = {}
        for ref in refs:
            rtype, _, query = ref.partition("?")
            pairs = parse_qsl(query, keep_blank_values=True)
            criterion = identifier_criterion(rtype, pairs)
            self._criteria[ref] = criterion
            self._by_type.setdefault(rtype, set()).add(ref)
            if criterion is not None:
                fast.setdefault(criterion, []).append(ref)
                continue
            try:
                self.known[ref] = [m["res_id"] for m in match_rows(conn, rtype, pairs, MULTIPLE)]
            except InputError as exc:
                self.known[ref] = exc
        if fast:
            for criterion, ids in match_identifiers(conn, fast).items():
                for ref in fast[criterion]:
                    self.known[ref] = ids

    def written(self, rtype: str, rid: str, resource: dict | None) -> None:
        """A write of rtype/rid (resource None: deleted): forget every answer it could change."""
        refs = self._by_type.get(rtype)
        if not refs:
            return
        tokens = identifier_tokens(resource) if resource is not None else set()
        for ref in list(refs):
            criterion, answer = self._criteria.get(ref), self.known.get(ref)
            if criterion is None or (criterion[1], criterion[2]) in tokens or (isinstance(answer, list) and rid in answer):
                self.known.pop(ref, None)
                refs.discard(ref)


def identifier_tokens(resource: dict) -> set[tuple[str, str]]:
    """(system, value) of the resource's `identifier` index rows: what an identifier search would match."""
    return {(row["system"], row["code"]) for kind, row in index_rows(resource)
            if kind == "token" and row["param"] == "identifier"}
