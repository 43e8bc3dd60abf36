"""One treatment, one item: records that describe the same treatment are folded into one therapy (LOT-DUPLICATE).

Folded: a medication record `partOf` a Procedure of the input; a MedicationAdministration of a MedicationRequest
of the input (`request`) for the same agent; and records of different kinds (statement, order, administration)
of the same agent whose periods overlap (neither proven over before the other starts). Administrations are the
most precise record of what was given, so an order or statement covering some is folded into them. Records of one kind are never folded together: two
statements are two exposures (a dose step, a restart), which the line rules read.
"""
from __future__ import annotations

from treatment_lines.events import Therapy
from treatment_lines.timeline import Timeline

# Which record of a treatment speaks for it: the procedure, then the order, the statement, the administration.
PRIMARY = {"Procedure": 0, "MedicationRequest": 1, "MedicationStatement": 2, "MedicationAdministration": 3}


def _fold(into: Therapy, item: Therapy) -> None:
    if into.rtype == "Procedure" and item.agents:
        into.agents = tuple(sorted(set(into.agents) | set(item.agents)))  # the procedure gave this agent
    into.also = sorted(set(into.also) | {item.key} | set(item.also))
    into.explicit_stop = into.explicit_stop or item.explicit_stop
    into.stop_reasons = sorted(set(into.stop_reasons) | set(item.stop_reasons))
    into.reasons = sorted(set(into.reasons) | set(item.reasons))
    into.combined_with = sorted(set(into.combined_with) | set(item.combined_with))
    into.reason_texts = list(dict.fromkeys(into.reason_texts + item.reason_texts))
    into.reason_concepts = into.reason_concepts + [c for c in item.reason_concepts if c not in into.reason_concepts]


def _overlap(tl: Timeline, a: Therapy, b: Therapy) -> bool:
    """Both are placed in time and neither is proven over before the other starts (same-day dates overlap)."""
    if tl.placed((a.key, "start")) is None or tl.placed((b.key, "start")) is None:
        return False
    return not tl.lt((a.key, "end"), (b.key, "start")) and not tl.lt((b.key, "end"), (a.key, "start"))


def _fold_group(same: list[Therapy], tl: Timeline) -> set[str]:
    """Records of one agent: an order or statement covering administrations is told by them (the first keeps
    its reference, the last its stop); an order and a statement of the same period are one (the order speaks)."""
    folded: set[str] = set()
    ordered = sorted(same, key=lambda i: (tl.sort_key((i.key, "start")), i.key))
    given = [i for i in ordered if i.rtype == "MedicationAdministration"]
    for record in sorted((i for i in ordered if i.rtype != "MedicationAdministration"), key=lambda i: (PRIMARY[i.rtype], i.key)):
        covered = [a for a in given if a.request == record.key or _overlap(tl, record, a)]
        if covered:
            first, last = covered[0], covered[-1]
            stop = (record.explicit_stop, record.stop_reasons)
            record.explicit_stop, record.stop_reasons = False, []
            _fold(first, record)
            last.explicit_stop = last.explicit_stop or stop[0]
            last.stop_reasons = sorted(set(last.stop_reasons) | set(stop[1]))
            folded.add(record.key)
            continue
        target = next((t for t in ordered if PRIMARY[t.rtype] < PRIMARY[record.rtype] and t.key not in folded
                       and t.rtype != "MedicationAdministration" and _overlap(tl, t, record)), None)
        if target is not None:
            _fold(target, record)
            folded.add(record.key)
    return folded


def merge(items: list[Therapy], tl: Timeline) -> list[Therapy]:
    """The therapies with every duplicate record folded into the record that speaks for its treatment."""
    by_key = {i.key: i for i in items}
    folded: set[str] = set()
    for item in sorted(items, key=lambda i: (PRIMARY.get(i.rtype, 9), i.key), reverse=True):
        if item.rtype == "Procedure":
            continue
        target = next((by_key[k] for k in item.part_of if k in by_key and by_key[k].rtype == "Procedure"), None)
        if target is not None and target.key not in folded:
            _fold(target, item)
            folded.add(item.key)
    groups: dict[str, list[Therapy]] = {}
    for item in items:
        if item.key not in folded and item.rtype != "Procedure":
            groups.setdefault(item.agent_code, []).append(item)
    for same in groups.values():
        if len({i.rtype for i in same}) > 1:
            folded |= _fold_group(same, tl)
    return [i for i in items if i.key not in folded]
