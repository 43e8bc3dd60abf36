"""Draws the lines: one pass over the therapies in time order, applying the rule pack's grouping rules."""
from __future__ import annotations

from dataclasses import dataclass, field

from treatment_lines.events import Therapy
from treatment_lines.rules import RuleBook
from treatment_lines.timeline import Timeline


def start(item: Therapy) -> tuple[str, str]:
    return (item.key, "start")


def end(item: Therapy) -> tuple[str, str]:
    return (item.key, "end")


@dataclass
class Member:
    item: Therapy
    role: str  # line | backbone | supportive


@dataclass
class Line:
    members: list[Member] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)  # (rule id, reference)

    def add(self, item: Therapy, role: str, rule: str | None) -> None:
        if not any(m.item.key == item.key and m.role == role for m in self.members):
            self.members.append(Member(item, role))
        if rule:
            self.fired.append((rule, item.key))

    def items(self, role: str = "line") -> list[Therapy]:
        return [m.item for m in self.members if m.role == role]


@dataclass
class SsaRun:
    """A somatostatin analogue given without a recorded stop, whatever formulation, route or setting."""

    line: Line
    items: list[Therapy]
    stop: Therapy | None = None


def linked(a: Therapy, b: Therapy) -> bool:
    """Recorded as given together: combined-with, one request group, or the very same relative start."""
    return (a.key in b.combined_with or b.key in a.combined_with or bool(a.group and a.group == b.group)
            or bool(a.start_signature and a.rtype == b.rtype and a.start_signature == b.start_signature))


def linear_order(items: list[Therapy], tl: Timeline) -> list[Therapy]:
    """A linear extension of the known order of starts; unordered ties go by earliest possible time, then key.

    Therapies recorded as given together follow each other directly, so that how resources happen to be
    named never splits a regimen around an unrelated therapy of uncertain time."""
    remaining = sorted(items, key=lambda i: (tl.sort_key(start(i)), i.key))
    ordered = []
    while remaining:
        def preceded(cand: Therapy) -> bool:
            return any(tl.le(start(o), start(cand)) and not tl.le(start(cand), start(o)) for o in remaining if o is not cand)
        pick = next((c for c in remaining if not preceded(c)), remaining[0])
        ordered.append(pick)
        remaining.remove(pick)
        for partner in [c for c in remaining if linked(pick, c)]:
            ordered.append(partner)
            remaining.remove(partner)
    return ordered


class LineBuilder:
    def __init__(self, rules: RuleBook, tl: Timeline):
        self.rules, self.tl = rules, tl
        self.lines: list[Line] = []
        self.run: SsaRun | None = None

    def build(self, therapies: list[Therapy]) -> list[Line]:
        supportive = []
        for item in linear_order(therapies, self.tl):
            role = self.rules.role(item.cls)
            if role == "supportive":
                supportive.append(item)
            elif role == "therapy":
                self._place(item)
        for item in supportive:
            line = self._latest_started_by(item)
            if line:
                line.add(item, "supportive", "LOT-SUPPORTIVE")
        return self.lines

    # -- placing one therapy ---------------------------------------------------------------------
    def _place(self, item: Therapy) -> None:
        ssa = self.rules.is_ssa(item.cls)
        current = self.lines[-1] if self.lines else None
        if ssa and self.run and self._continues_run(item):
            self._continue_ssa(item)
            return
        if current and (rule := self._joins_regimen(current, item)):
            current.add(item, "line", rule)
            if ssa:
                self.run = SsaRun(current, [item], item if item.explicit_stop else None)
            return
        if current and not ssa and (rule := self._continues_line(current, item)):
            current.add(item, "line", rule)
            return
        self._new_line(item, ssa)

    def _continue_ssa(self, item: Therapy) -> None:
        previous = next((i for i in reversed(self.run.items) if i.agent_code == item.agent_code), self.run.items[-1])
        rule = "LOT-SSA-ESCALATE" if _escalates(previous, item) else "LOT-SSA-CONTINUE"
        self.run.items.append(item)
        if item.explicit_stop:
            self.run.stop = item
        if self.run.line is self.lines[-1]:
            self.run.line.add(item, "line", rule)
        else:
            (self._latest_started_by(item) or self.lines[-1]).add(item, "backbone", rule)

    def _new_line(self, item: Therapy, ssa: bool) -> None:
        line = Line()
        current = self.lines[-1] if self.lines else None
        if ssa:
            rule = "LOT-SSA-START" if not self.run else "LOT-SSA-RESTART" if self.run.stop else "LOT-GAP"
        elif current and self._same_therapy(current, item):
            rule = "LOT-GAP"
        else:
            rule = "LOT-NEW-THERAPY"
        line.add(item, "line", rule)
        if not ssa:
            for running in self._running_ssa(item):
                line.add(running, "backbone", "LOT-SSA-BACKBONE")
        self.lines.append(line)
        if ssa:
            self.run = SsaRun(line, [item], item if item.explicit_stop else None)

    # -- the rules -------------------------------------------------------------------------------
    def _joins_regimen(self, line: Line, item: Therapy) -> str | None:
        members = line.items()
        if any(linked(item, other) for other in members):
            return "LOT-REGIMEN-LINK"
        if any(self.tl.within(start(m), start(item), self.rules.regimen_days) for m in first_items(line, self.tl)):
            return "LOT-REGIMEN-WINDOW"
        return None

    def _same_therapy(self, line: Line, item: Therapy) -> list[Therapy]:
        local = self.rules.is_local(item.cls)
        return [m for m in line.items()
                if (m.cls == item.cls if local else m.agent_code == item.agent_code)]

    def _continues_line(self, line: Line, item: Therapy) -> str | None:
        same = self._same_therapy(line, item)
        if not same or self._gap_exceeded(same, item):
            return None
        return "LOT-LOCAL-REPEAT" if self.rules.is_local(item.cls) else "LOT-CONTINUATION"

    def _gap_exceeded(self, before: list[Therapy], item: Therapy) -> bool:
        return all(self.tl.lt(end(b), start(item), self.rules.gap_days) for b in before)

    def _continues_run(self, item: Therapy) -> bool:
        if self._gap_exceeded(self.run.items, item):
            return False
        if self.run.stop is None:
            return True
        # After a recorded stop only a start proven to fall within the regimen window of that stop continues.
        return self.tl.diff(end(self.run.stop), start(item))[1] <= self.rules.regimen_days

    def _running_ssa(self, item: Therapy) -> list[Therapy]:
        """Exposures of the run still going when `item` starts (or within the regimen window before it).

        An exposure followed by a later one of the same analogue (a dose step, a new injection) counts only
        if its own end is proven to reach the new therapy's start.
        """
        if not self.run:
            return []
        tl, items = self.tl, self.run.items

        def replaced(n: int, s: Therapy) -> bool:
            # Items of the run were all placed before `item` in the linear order of starts.
            return any(o.agent_code == s.agent_code for o in items[n + 1:])
        return [s for n, s in enumerate(items)
                if not tl.lt(end(s), start(item), self.rules.regimen_days)
                and (not replaced(n, s) or tl.le(start(item), end(s)))]

    def _latest_started_by(self, item: Therapy) -> Line | None:
        for line in reversed(self.lines):
            if any(self.tl.le(start(m), start(item)) for m in line.items()):
                return line
        return None


def first_items(line: Line, tl: Timeline) -> list[Therapy]:
    """The line's therapies that no other therapy of the line is proven to precede: where the line starts."""
    items = line.items()
    return [i for i in items if not any(tl.le(start(o), start(i)) and not tl.le(start(i), start(o)) for o in items)]


def _escalates(previous: Therapy, item: Therapy) -> bool:
    a, b = previous.daily_dose, item.daily_dose
    return bool(a and b and a[1] == b[1] and b[0] > a[0] + 1e-9)


def modality(line: Line, rules: RuleBook) -> str:
    found = {rules.modality(i.cls) for i in line.items()}
    if len(found) == 1:
        return found.pop()
    return "combined"
