"""The search parameters we serve, read once from mappings/search_parameters.json (R4 4.0.1 definitions)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent.parent / "mappings" / "search_parameters.json"
KINDS = ("token", "string", "reference", "date", "uri")

# The choice-type suffixes a `[x]` path step takes, per parameter type (FHIR R4 search.html: which data types
# each parameter type searches).
CHOICE_SUFFIXES = {
    "date": ("DateTime", "Date", "Instant", "Period"),
    "token": ("CodeableConcept", "Coding", "Code", "Boolean", "String", "Identifier"),
    "reference": ("Reference",),
    "string": ("String",),
    "uri": ("Uri", "Canonical", "Url"),
}


@dataclass(frozen=True)
class Step:
    name: str
    choice: bool = False   # the path's last element is a choice (value[x]): take the suffixes fitting the type


@dataclass(frozen=True)
class SearchParam:
    resource: str
    name: str
    type: str
    paths: tuple[tuple[Step, ...], ...]   # without the leading resource type
    target_type: str | None = None        # only references to this type (R4 `where(resolve() is T)`)
    targets: tuple[str, ...] = ()         # the types a reference may point to ('*': any)
    column: str | None = None             # _id and _lastUpdated read a column of resources instead of an index


def _steps(path: str) -> tuple[Step, ...]:
    names = path.split(".")[1:]
    steps = [Step(n) for n in names]
    if steps and steps[-1].name.endswith("[x]"):
        steps[-1] = Step(steps[-1].name[:-3], choice=True)
    return tuple(steps)


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, dict[str, SearchParam]], tuple[SearchParam, ...]]:
    doc = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    by_type: dict[str, dict[str, SearchParam]] = {}
    for row in doc["parameters"]:
        param = SearchParam(row["resource"], row["name"], row["type"], tuple(_steps(p) for p in row["paths"]),
                            row.get("target_type"), tuple(row.get("targets", ())))
        by_type.setdefault(row["resource"], {})[row["name"]] = param
    common = tuple(SearchParam("Resource", row["name"], row["type"], (), column=row["column"]) for row in doc["common"])
    return by_type, common


def params_for(rtype: str) -> dict[str, SearchParam]:
    """Every parameter of the type, _id and _lastUpdated included."""
    by_type, common = _load()
    merged = {p.name: p for p in common}
    merged.update(by_type.get(rtype, {}))
    return merged


@lru_cache(maxsize=512)
def indexed_params(rtype: str) -> tuple[SearchParam, ...]:
    """The parameters whose values live in index tables (not _id / _lastUpdated)."""
    return tuple(_load()[0].get(rtype, {}).values())


def searchable_types() -> tuple[str, ...]:
    return tuple(sorted(_load()[0]))
