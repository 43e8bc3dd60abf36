"""What happened during and after each line: outcomes linked to it, and why it ended."""
from __future__ import annotations

from collections.abc import Callable

from treatment_lines.events import ConditionEvent, OutcomeEvent
from treatment_lines.lines import Line, end, extremes, first_items, start
from treatment_lines.rules import RuleBook
from treatment_lines.timeline import Timeline

Node = tuple[str, str]


class LineContext:
    """One line seen against its neighbours: which events fall after its start and before the next line."""

    def __init__(self, line: Line, following: Line | None, death: Node | None, tl: Timeline):
        self.line, self.following, self.death, self.tl = line, following, death, tl
        self.keys = {i.key for i in line.items()}
        # What the line's own therapies were given for is not what ended it: a crisis that a further session of the
        # same line was given for (the embolization done for the hypoglycaemic coma) began mid-line.
        self.own_reasons = {r for i in line.items() for r in i.reasons}

    def after_start(self, node: Node) -> bool:
        starts = [start(i) for i in first_items(self.line, self.tl)]
        return any(self.tl.le(s, node) for s in starts) and not any(self.tl.le(node, s) for s in starts)

    def before_next(self, node: Node) -> bool:
        if self.following is not None:
            nxt = first_items(self.following, self.tl)
            return any(self.tl.le(node, start(i)) for i in nxt) or node[0] in {r for i in nxt for r in i.reasons}
        if self.death is not None:
            return self.tl.le(node, self.death)
        return True

    def in_window(self, node: Node) -> bool:
        return node[0] not in self.own_reasons and self.after_start(node) and self.before_next(node)

    def after_completed_course(self, node: Node) -> bool:
        """Every line therapy was completed and is proven over before `node`: what happens then ends the
        treatment-free interval that followed the line, not the line (a planned course given in full). The caller
        also requires that no therapy of the line went on as a later line's backbone (monthly SSA injections are
        each 'completed', yet the analogue never stopped)."""
        items = self.line.items()
        return all(i.status == "completed" for i in items) and all(self.tl.lt(end(i), node) for i in items)


def linked(outcome: OutcomeEvent, ctx: LineContext) -> bool:
    """Outcomes name their treatment (extension 'treatment'); unlinked disease statuses count by time."""
    if outcome.treatments:
        return bool(set(outcome.treatments) & ctx.keys)
    return outcome.kind == "disease-status" and ctx.in_window((outcome.key, "start"))


def _best(found: list[OutcomeEvent], rank: list[str], attr: str = "value") -> OutcomeEvent | None:
    ranked = [o for o in found if getattr(o, attr) in rank]
    return min(ranked, key=lambda o: (rank.index(getattr(o, attr)), o.key)) if ranked else None


def line_outcomes(ctx: LineContext, outcomes: list[OutcomeEvent], conditions: list[ConditionEvent],
                  rules: RuleBook) -> dict:
    mine = [o for o in outcomes if linked(o, ctx)]
    status = [o for o in mine if o.kind == "disease-status"]
    ds = rules.disease_status
    best = min(status, key=lambda o: (ds["categoryRank"].index(o.category), ds["statusRank"].index(o.value), o.key),
               default=None)
    control = _best([o for o in mine if o.kind == "symptom-control"], rules.outcomes["controlRank"])
    biomarker = _best([o for o in mine if o.kind == "biomarker-response"], rules.outcomes["biomarkerRank"])
    complications = [c for c in conditions if c.kind == "complication" and set(c.due_to) & ctx.keys]
    return {
        "bestRadiologicalResponse": None if best is None else {
            "category": best.category, "status": best.value, "text": best.text,
            "observations": sorted(o.key for o in status)},
        "syndromeControl": None if control is None else {
            "value": control.value, "duration": control.duration, "text": control.text,
            "observations": sorted(o.key for o in mine if o.kind == "symptom-control")},
        "biomarkerResponse": None if biomarker is None else {
            "value": biomarker.value, "markers": biomarker.markers, "duration": biomarker.duration,
            "text": biomarker.text, "observations": [biomarker.key]},
        "complications": [{"reference": c.key, "text": c.text, "resolved": c.resolved} for c in complications],
    }


def last_backbone_line(lines: list[Line]) -> dict[str, int]:
    """Therapy key -> index of the last line that carries it as backbone (computed once per summary)."""
    return {m.item.key: n for n, line in enumerate(lines) for m in line.members if m.role == "backbone"}


def end_reason(ctx: LineContext, continued_later: Callable[[str], bool], conditions: list[ConditionEvent], outcomes: list[OutcomeEvent],
               rules: RuleBook) -> dict | None:
    """The highest-priority reason with evidence, as {code, rule, evidence}; None while the line is open."""
    found: dict[str, dict] = {}

    def note(kind: str, code: str, rule: str, key: str) -> None:
        found.setdefault(kind, {"code": code, "rule": rule, "evidence": set()})["evidence"].add(key)

    for item in ctx.line.items():
        # A stop counts for this line only if the therapy did not go on as a later line's backbone.
        if item.explicit_stop and not continued_later(item.key):
            for code in item.stop_reasons:
                if code in rules.status_reasons:
                    note("status-reason", rules.status_reasons[code], "END-STATUS-REASON", item.key)
    for c in conditions:
        node = (c.key, "start")
        if c.kind == "tumour" and ctx.in_window(node):
            note("progression", "progression", "END-PROGRESSION", c.key)
        elif c.kind == "syndrome" and ctx.in_window(node) and not (
                ctx.after_completed_course(node) and not any(continued_later(i.key) for i in ctx.line.items())):
            note("symptom-recurrence", "symptom-recurrence", "END-SYMPTOM-RECURRENCE", c.key)
        elif c.kind == "complication" and set(c.due_to) & ctx.keys and ctx.before_next(node) and not c.resolved:
            note("toxicity", "toxicity", "END-TOXICITY", c.key)
    last = {i.key for i in extremes(ctx.tl, ctx.line.items(), latest=True)}
    for o in outcomes:
        if o.kind == "disease-status" and o.category == "progressive-disease" and linked(o, ctx):
            note("progression", "progression", "END-PROGRESSION", o.key)
        elif o.kind == "symptom-control" and o.value == "none" and set(o.treatments) & last:
            note("no-response", "no-response", "END-NO-RESPONSE", o.key)  # the line's last therapy did nothing
    if ctx.following is None and ctx.death is not None:
        members = [m.item for m in ctx.line.members if m.role in ("line", "backbone")]
        if any(not ctx.tl.lt(end(i), ctx.death) for i in members):
            note("death", "death", "END-DEATH", ctx.death[0])
    if all(i.status == "completed" for i in ctx.line.items()):
        note("completed", "completed", "END-COMPLETED", ctx.line.items()[0].key)
    kind = next((k for k in rules.end_priority if k in found), None)
    if kind is None:
        return None
    # Reasons of lower priority that also had evidence (the bleeding beside the failure); 'completed' is only the
    # fallback when nothing else is found, so it never contributes.
    contributing = [{"code": found[k]["code"], "rule": found[k]["rule"], "evidence": sorted(found[k]["evidence"])}
                    for k in rules.end_priority if k in found and k not in (kind, "completed")]
    return found[kind] | {"evidence": sorted(found[kind]["evidence"]), "contributing": contributing}
