"""Precision and recall of a draft against span-annotated gold: per fact type, spans exact, assertion equal.

A predicted fact is the set of mentions the engine tied to one case fact (a regimen's agents count one by
one); it matches a gold fact when the gold span is one of its mention spans, with the same type, assertion
and (when the gold names one) lexicon key. Ages, sexes, doses, particle sizes and times count one per span."""
from __future__ import annotations

from dataclasses import dataclass, field

SPAN_ROLES = ("age", "sex", "dosage", "time", "particles")


@dataclass
class Unit:
    type: str
    assertion: str
    key: str | None
    spans: set[tuple[int, int]] = field(default_factory=set)
    text: str = ""


def predicted_units(draft: dict) -> list[Unit]:
    groups: dict[tuple, Unit] = {}
    for number, mention in enumerate(draft["mentions"]):
        if mention["fact"] is None and mention["assertion"] == "present":
            continue  # matched by the lexicon but not used: listed as unmapped, not a fact
        group = (mention["fact"] or f"#{number}", mention["type"], mention["key"], mention["assertion"]
                 if mention["fact"] is None else None)
        unit = groups.setdefault(group, Unit(mention["type"], mention["assertion"], mention["key"], text=mention["text"]))
        unit.spans.add((mention["start"], mention["end"]))
    seen: set[tuple] = set()
    for record in draft["evidence"]:
        kind = record.get("type") if record["role"] in ("age", "sex", "dosage") else record["role"]
        if record["role"] not in SPAN_ROLES or (kind, record["start"], record["end"]) in seen:
            continue
        seen.add((kind, record["start"], record["end"]))
        groups[(kind, record["start"], record["end"])] = Unit(kind, "present", None, {(record["start"], record["end"])},
                                                              record["text"])
    return list(groups.values())


def score(gold: list[dict], units: list[Unit]) -> dict:
    """{'types': {type: {tp, fp, fn, precision, recall, f1}}, 'missed': [...], 'spurious': [...]}"""
    free = list(units)
    missed = []
    matched: list[Unit] = []
    for fact in gold:
        hit = next((u for u in free if u.type == fact["type"] and u.assertion == fact["assertion"]
                    and (fact["start"], fact["end"]) in u.spans and (not fact.get("key") or fact["key"] == u.key)), None)
        if hit is None:
            missed.append(fact)
        else:
            free.remove(hit)
            matched.append(hit)
    types = sorted({f["type"] for f in gold} | {u.type for u in units})
    table = {}
    for kind in types:
        tp = sum(1 for u in matched if u.type == kind)
        fp = sum(1 for u in free if u.type == kind)
        fn = sum(1 for f in missed if f["type"] == kind)
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[kind] = {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
    spurious = [{"type": u.type, "assertion": u.assertion, "key": u.key, "spans": sorted(u.spans), "text": u.text}
                for u in free]
    return {"types": table, "missed": missed, "spurious": spurious}
