"""summarise(): one patient's FHIR resources in, treatment lines, surgeries, critical events and death out."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from treatment_lines import events as ev
from treatment_lines import primaries
from treatment_lines.lines import (
    Line,
    LineBuilder,
    end,
    first_items,
    linear_order,
    modality,
    start,
)
from treatment_lines.merge import merge
from treatment_lines.order import extreme_nodes
from treatment_lines.outcomes import (
    LineContext,
    end_reason,
    last_backbone_line,
    line_outcomes,
)
from treatment_lines.report import approximate_keys, flag_approximate, interval, not_computable, time_span
from treatment_lines.resources import ResourceIndex
from treatment_lines.rules import RuleBook, load_rules
from treatment_lines.timeline import POINT_EVENTS, Timeline

ROLE_ORDER = {"line": 0, "backbone": 1, "supportive": 2}
OPEN_STATUSES = {"active", "in-progress", "on-hold", "unknown", "intended"}


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A summary allocates many short-lived objects that form no cycles; each pass of the cyclic collector would
    traverse the whole heap (the caller's resources included), so its cost grows with the square of the history.
    Paused for one summary (at most about a second); re-enabled only if it was enabled, so a caller's choice stands."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def summarise(resources: list[dict], rules: dict | None = None) -> dict:
    """The treatment-line summary of one patient; deterministic and independent of the order of `resources`."""
    with _cyclic_gc_paused():
        return _summarise(resources, rules)


def _summarise(resources: list[dict], rules: dict | None) -> dict:
    book = RuleBook(rules or load_rules())
    index = ResourceIndex([r for r in resources if isinstance(r, dict) and r.get("resourceType")])
    outcomes = ev.outcomes(index, book)
    focus = {k for k, _ in index.of_type("Patient", "Condition", "Procedure", *ev.MEDICATION_TYPES)} | {o.key for o in outcomes}
    therapies, notes = ev.therapies(index, book)
    # A depot acts after its injection: its end is the end of its action, for the gap and the line's end alike.
    tl = Timeline(index, focus, acting={t.key: t.action_days for t in therapies if t.action_days})
    therapies = merge(therapies, tl)
    conditions = ev.conditions(index, book)
    death = _death_node(index)
    found = primaries.cancers(index, book, tl)
    flags = tl.issues + notes
    summaries: list[dict] = []
    # Recorded progressions (a new tumour condition, progressive disease): switch maintenance must not follow one.
    progression = [(c.key, "start") for c in conditions if c.kind == "tumour"] + [
        (o.key, "start") for o in outcomes if o.kind == "disease-status" and o.category == "progressive-disease"]
    approximate = approximate_keys(index.by_key)
    for n, group in enumerate(primaries.attribute(therapies, found, book, tl)):
        cancer = found[n] if found else None
        book.use_indication(cancer.indication if cancer else None)
        lines = LineBuilder(book, tl, progression).build(group)
        offset = len(summaries)
        flags += _order_flags(lines, tl, offset)
        backbone_at = last_backbone_line(lines)
        summaries += [_line(k, lines, death, tl, book, conditions, outcomes, flags, backbone_at, offset, approximate)
                      | {"cancer": cancer.key if cancer else None} for k in range(len(lines))]
    book.use_indication(found[0].indication if found else None)
    return {
        "rulePackVersion": book.version,
        "patient": patient[0] if (patient := index.patient()) else None,
        "indication": book.lines.indication,
        "cancers": [{"reference": c.key, "text": c.text, "indication": c.indication, "conditions": c.conditions,
                     "lines": [line["number"] for line in summaries if line["cancer"] == c.key]} for c in found],
        "lines": summaries,
        "surgeries": _surgeries(therapies, tl, book),
        "criticalEvents": _critical(therapies, conditions, tl, book, index.of_type("Encounter")),
        "death": _death(index, death, tl, summaries),
        "flags": sorted(flags, key=lambda f: (f["code"], f["references"], f["message"])),
    }


def _death_node(index: ResourceIndex) -> tuple[str, str] | None:
    patient = index.patient()
    if patient and (patient[1].get("deceasedBoolean") or patient[1].get("deceasedDateTime")):
        return (patient[0], "start")
    return None


def _order_flags(lines: list[Line], tl: Timeline, offset: int = 0) -> list[dict]:
    """Consecutive lines whose order the recorded times do not prove are flagged, not silently ordered."""
    flags = []
    for n in range(1, len(lines)):
        before, after = lines[n - 1].items(), lines[n].items()
        latest_after = extreme_nodes(tl, [start(b) for b in after], latest=True)
        if not any(tl.le(start(a), b) for a in lines[n - 1].first for b in latest_after):
            refs = sorted(i.key for i in before + after)
            a, b = n + offset, n + 1 + offset
            flags.append({"code": "order-ambiguous", "references": refs, "lines": [a, b],
                          "message": f"the times of lines {a} and {b} do not prove which came first; "
                                     "their numbering follows the earliest possible start only"})
    return flags


def _component(member) -> dict:
    item = member.item
    coding = next(iter(item.concept.get("coding") or []), None)
    dose = item.dose
    return {
        "reference": item.key, "resourceType": item.rtype, "role": member.role, "class": item.cls,
        "code": {k: coding[k] for k in ("system", "code", "display") if k in coding} if coding else None,
        "text": ev.label(item.concept), "status": item.status, "alsoRecordedAs": list(item.also),
        "dose": f"{dose['value']:g} {dose.get('unit', '')}".strip() if dose and dose.get("value") is not None else None,
        "route": item.route, "frequency": item.frequency, "sites": item.sites,
    }


def _end(line: Line, following: Line | None, tl: Timeline, death=None) -> tuple[list, bool, str | None]:
    """(end nodes, ongoing, rule): a therapy that goes on as the next line's backbone ends this line there; the
    last line of a patient who died with one of its therapies (or its backbone) not proven over ends at death, so
    that its duration agrees with its end reason (END-DEATH)."""
    items = line.items()
    if following and any(m.role == "backbone" and m.item in items for m in following.members):
        return [start(i) for i in first_items(following, tl)], False, None
    if following is None and death is not None and any(
            not tl.lt(end(m.item), death) for m in line.members if m.role in ("line", "backbone")):
        return [death], False, None
    known = [end(i) for i in items if i.rtype in POINT_EVENTS or i.key in tl.points or end(i) in tl.anchored]
    if len(known) == len(items):
        return extreme_nodes(tl, known, latest=True), False, None
    if following is None and any(i.status in OPEN_STATUSES for i in items):
        return [], True, "END-OPEN"
    return [], False, None


def _line(n: int, lines: list[Line], death, tl: Timeline, book: RuleBook, conditions, outcomes, flags,
          backbone_at: dict[str, int], offset: int = 0, approximate: set[str] | None = None) -> dict:
    """Line n of one cancer's lines; `offset` numbers the lines of several cancers one after the other."""
    line = lines[n]
    following = lines[n + 1] if n + 1 < len(lines) else None
    ctx = LineContext(line, following, death, tl)
    starts = [start(i) for i in line.first]  # the earliest start is always among the first therapies
    end_nodes, ongoing, open_rule = _end(line, following, tl, death)
    reason = None if ongoing else end_reason(ctx, lambda key: backbone_at.get(key, -1) > n, conditions, outcomes, book)
    number = n + 1 + offset
    if not end_nodes and not ongoing:
        flags.append({"code": "end-unknown", "references": sorted(i.key for i in line.items()), "lines": [number],
                      "message": f"line {number} has no recorded end"})
    fired = list(line.fired)
    if line.dropped:
        flags.append({"code": "maintenance", "references": sorted(i.key for i in line.items()), "lines": [number],
                      "message": f"line {number}: {', '.join(line.dropped)} stopped after induction while "
                                 f"{', '.join(line.maintenance)} went on (continuation maintenance, same line)"})
    if line.switched_to:
        flags.append({"code": "switch-maintenance", "references": sorted(i.key for i in line.items()), "lines": [number],
                      "message": f"line {number}: {', '.join(line.switched_to)} started after the "
                                 f"{', '.join(line.induction_agents)} induction without a recorded progression "
                                 "(switch maintenance, same line)"})
    fired += [("LOT-DUPLICATE", m.item.key) for m in line.members if m.item.also]
    if modality(line, book) == "combined":
        fired.append(("LOT-COMBINED", line.items()[0].key))
    if reason:
        fired += [(reason["rule"], key) for key in reason["evidence"]]
    if open_rule:
        fired.append((open_rule, line.items()[0].key))
    members = sorted(line.members, key=lambda m: ROLE_ORDER[m.role])
    name = _name(line)
    next_starts = [start(i) for i in first_items(following, tl)] if following else []
    duration = interval(tl, starts, end_nodes, "duration", to_latest=True) if end_nodes else not_computable(
        "the line is ongoing" if ongoing else "no end is recorded")
    to_next = interval(tl, starts, next_starts, "time to next treatment") if following else not_computable(
        "no later line" + (" before death" if death else ""))
    return {
        "number": number,
        "name": ", ".join(name),
        "type": "combination" if len(name) > 1 else "monotherapy",
        "modality": modality(line, book),
        "classes": sorted({i.cls for i in line.items()}),
        "start": time_span(tl, starts),
        "end": time_span(tl, end_nodes, latest=True) if end_nodes else None,
        "ongoing": ongoing,
        "duration": flag_approximate(duration, starts + end_nodes, approximate or set()),
        "endReason": reason,
        "components": [_component(m) for m in members],
        "outcomes": line_outcomes(ctx, outcomes, conditions, book),
        "timeToNextTreatment": flag_approximate(to_next, starts + next_starts, approximate or set()),
        "maintenance": {"continued": line.maintenance, "dropped": line.dropped} if line.dropped else None,
        "rulesFired": _rules_fired(fired, book),
        "references": list(dict.fromkeys(k for m in members for k in [m.item.key, *m.item.also])),
    }


def _name(line: Line) -> list[str]:
    """The line's agents, sorted; a therapy without an agent (a procedure) by its class, unless an agent of the
    line already stands for that class (the sessions of one radionuclide course)."""
    agents = {a for i in line.items() for a in i.agents}
    named = {i.cls for i in line.items() if i.agents}
    return sorted(agents | {i.cls for i in line.items() if not i.agents and i.cls not in named})


def _rules_fired(fired: list[tuple[str, str]], book: RuleBook) -> list[dict]:
    grouped: dict[str, list[str]] = {}
    for rule, key in fired:
        refs = grouped.setdefault(rule, [])
        if key not in refs:
            refs.append(key)
    return [{"id": rule, "explanation": book.explain(rule), "references": refs} for rule, refs in grouped.items()]


def _surgeries(therapies: list[ev.Therapy], tl: Timeline, book: RuleBook) -> list[dict]:
    found = linear_order([t for t in therapies if book.role(t.cls) == "surgery"], tl)
    return [{"reference": s.key, "text": ev.label(s.concept), "code": _component(_Bare(s))["code"], "intent": s.intent,
             "sites": s.sites, "time": time_span(tl, [start(s)]), "rule": "LOT-SURGERY"} for s in found]


class _Bare:
    def __init__(self, item: ev.Therapy):
        self.item, self.role = item, "surgery"


def _critical(therapies: list[ev.Therapy], conditions: list[ev.ConditionEvent], tl: Timeline, book: RuleBook,
              encounters: list[tuple[str, dict]] | None = None) -> list[dict]:
    found = [{"reference": t.key, "kind": "intensive-care", "text": ev.label(t.concept),
              "start": time_span(tl, [start(t)]), "end": time_span(tl, [end(t)]) if end(t) in tl.anchored else None}
             for t in therapies if book.role(t.cls) == "critical-event"]
    # An intensive-care stay recorded as an Encounter (our mapping does so): its type read by the procedure table.
    for key, encounter in encounters or []:
        concept = next(iter(encounter.get("type") or []), None)
        if concept and book.role(book.classify(concept).cls) == "critical-event":
            node, last = (key, "start"), (key, "end")
            found.append({"reference": key, "kind": "intensive-care", "text": ev.label(concept),
                          "start": time_span(tl, [node]), "end": time_span(tl, [last]) if last in tl.anchored else None})
    found += [{"reference": c.key, "kind": "condition", "text": c.text, "start": time_span(tl, [(c.key, "start")]),
               "end": None} for c in conditions if c.kind == "critical"]
    return sorted(found, key=lambda e: (tl.sort_key((e["reference"], "start")), e["reference"]))


def _death(index: ResourceIndex, node, tl: Timeline, lines: list[dict]) -> dict | None:
    if node is None:
        return None
    responded = [line for line in lines if line["outcomes"]["bestRadiologicalResponse"]]
    last = responded[-1] if responded else None
    return {
        "reference": node[0],
        "time": time_span(tl, [node]) if node in tl.anchored or tl.placed(node) else None,
        "lastLineResponse": None if last is None else {
            "line": last["number"], "category": last["outcomes"]["bestRadiologicalResponse"]["category"]},
    }
