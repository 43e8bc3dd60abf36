"""Several primary cancers: which cancer each therapy treats, so that each cancer gets its own lines.

A cancer is the set of Conditions that select one indication table (ICD-10-CM, SNOMED CT or their words), so a
primary and its metastases stay one cancer. A therapy goes to the cancer its reasonReference or reasonCode
names; otherwise to the cancer most recently diagnosed by the time it started (proven from the recorded
times); otherwise to the first cancer.
"""
from __future__ import annotations

from dataclasses import dataclass

from treatment_lines.events import Therapy, label
from treatment_lines.resources import ResourceIndex
from treatment_lines.rules import RuleBook
from treatment_lines.timeline import Timeline


@dataclass
class Cancer:
    indication: str
    conditions: list[str]   # Condition keys, earliest first
    text: str | None

    @property
    def key(self) -> str:
        return self.conditions[0]


def cancers(index: ResourceIndex, book: RuleBook, tl: Timeline) -> list[Cancer]:
    """The patient's cancers, earliest diagnosis first."""
    found: dict[str, list[tuple]] = {}
    for key, resource in index.of_type("Condition"):
        concept = resource.get("code") or {}
        name = book.indication(concept.get("coding") or [], concept.get("text"))
        if name:
            found.setdefault(name, []).append((tl.sort_key((key, "start")), key, label(concept)))
    groups = [Cancer(name, [k for _, k, _ in sorted(rows)], min(rows)[2]) for name, rows in found.items()]
    return sorted(groups, key=lambda c: (tl.sort_key((c.key, "start")), c.key))


def attribute(therapies: list[Therapy], found: list[Cancer], book: RuleBook, tl: Timeline) -> list[list[Therapy]]:
    """The therapies of each cancer (one list per cancer, in the order of `found`; one list when there is none)."""
    if len(found) <= 1:
        return [list(therapies)]
    by_condition = {k: n for n, cancer in enumerate(found) for k in cancer.conditions}
    by_indication = {cancer.indication: n for n, cancer in enumerate(found)}
    groups: list[list[Therapy]] = [[] for _ in found]
    for item in therapies:
        groups[_cancer_of(item, found, by_condition, by_indication, book, tl)].append(item)
    return groups


def _cancer_of(item: Therapy, found: list[Cancer], by_condition: dict[str, int], by_indication: dict[str, int],
               book: RuleBook, tl: Timeline) -> int:
    for ref in item.reasons:
        if ref in by_condition:
            return by_condition[ref]
    for concept in item.reason_concepts:
        name = book.indication(concept.get("coding") or [], concept.get("text"))
        if name in by_indication:
            return by_indication[name]
    started = [n for n, cancer in enumerate(found) if tl.le((cancer.key, "start"), (item.key, "start"))]
    return started[-1] if started else 0
