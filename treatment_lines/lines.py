"""Draws the lines: one pass over the therapies in time order, applying the rule pack's grouping rules.

Every check touches a bounded set (a line's first therapies, the records of one agent read from the latest),
so a history of thousands of administrations costs about linearly more than one of ten.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from treatment_lines.events import Therapy
from treatment_lines.order import before, extremes, first_items, linear_order, linked
from treatment_lines.rules import RuleBook
from treatment_lines.timeline import Timeline
from treatment_lines.times import EPS, INF

# How the agents of a line's first regimen join it (the induction, as opposed to later additions).
INDUCTION_RULES = ("LOT-NEW-THERAPY", "LOT-GAP", "LOT-REGIMEN-WINDOW", "LOT-REGIMEN-LINK", "LOT-CHEMORADIATION")
__all__ = ["Line", "LineBuilder", "Member", "end", "extremes", "first_items", "linear_order", "linked", "modality", "start"]


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
    tl: Timeline
    members: list[Member] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)  # (rule id, reference)
    first: list[Therapy] = field(default_factory=list)          # line therapies no other one is proven to precede
    _roles: set[tuple[str, str]] = field(default_factory=set)
    _line_items: list[Therapy] = field(default_factory=list)
    by_agent: dict[str, list[Therapy]] = field(default_factory=dict)
    maintenance: list[str] = field(default_factory=list)  # agents going on after others were dropped
    dropped: list[str] = field(default_factory=list)
    _links: set[str] = field(default_factory=set)
    switched_to: list[str] = field(default_factory=list)  # switch-maintenance agents (LOT-SWITCH-MAINTENANCE)
    induction_agents: list[str] = field(default_factory=list)  # the induction they followed

    def add(self, item: Therapy, role: str, rule: str | None) -> None:
        if (item.key, role) not in self._roles:
            self._roles.add((item.key, role))
            self.members.append(Member(item, role))
            if role == "line":
                self._add_line_item(item)
        if rule:
            self.fired.append((rule, item.key))

    def _add_line_item(self, item: Therapy) -> None:
        self._line_items.append(item)
        if not any(before(self.tl, f, item) for f in self.first):
            self.first = [f for f in self.first if not before(self.tl, item, f)] + [item]
        # key: the resources the line's therapies name as combined-with; member: the line's own therapies.
        self._links |= {f"member:{item.key}"} | {f"key:{k}" for k in item.combined_with}
        if item.group:
            self._links.add(f"group:{item.group}")
        if item.start_signature:
            self._links.add(f"sig:{item.rtype}:{item.start_signature}")

    def items(self, role: str = "line") -> list[Therapy]:
        if role == "line":
            return list(self._line_items)
        return [m.item for m in self.members if m.role == role]

    def linked_to(self, item: Therapy) -> bool:
        """Recorded as given with one of the line's therapies (combined-with, request group, same relative start)."""
        return (f"key:{item.key}" in self._links or any(f"member:{k}" in self._links for k in item.combined_with)
                or bool(item.group and f"group:{item.group}" in self._links)
                or bool(item.start_signature and f"sig:{item.rtype}:{item.start_signature}" in self._links))


@dataclass
class BackboneRun:
    """A backbone therapy (SSA, ADT) given without a recorded stop, whatever agent, formulation, route or setting."""

    kind: str
    line: Line
    items: list[Therapy]
    stop: Therapy | None = None


class LineBuilder:
    def __init__(self, rules: RuleBook, tl: Timeline, progression: list[tuple[str, str]] | None = None):
        """`progression`: the times of recorded progressions (new tumour conditions, progressive disease)."""
        self.rules, self.tl = rules, tl
        self.progression = progression or []
        self.lines: list[Line] = []
        self.runs: dict[str, BackboneRun] = {}

    def build(self, therapies: list[Therapy]) -> list[Line]:
        frames = self.tl.frames()
        self._frame = frames[0] if frames else None
        placed = sorted(((self.tl.low(start(t), self._frame), t.key, t) for t in therapies
                         if self._frame and math.isfinite(self.tl.low(start(t), self._frame))), key=lambda x: (x[0], x[1]))
        self._lows, self._by_low = [p[0] for p in placed], [p[2] for p in placed]
        supportive = []
        for item in linear_order(therapies, self.tl):
            role = self.rules.role(item.cls)
            if role == "supportive" or (role == "therapy" and self._palliative_rt(item)):
                supportive.append(item)
            elif role == "therapy":
                self._place(item)
        self._index_starts()
        for item in supportive:
            line = self._latest_started_by(item)
            if line:
                rule = "LOT-RT-PALLIATIVE" if self.rules.role(item.cls) == "therapy" else "LOT-SUPPORTIVE"
                line.add(item, "supportive", rule)
        for line in self.lines:
            self._maintenance(line)
        return self.lines

    def _palliative_rt(self, item: Therapy) -> bool:
        """Radiotherapy of bone metastases for palliation accompanies a line; it is not one."""
        if item.cls != "radiotherapy":
            return False
        words = " ".join(item.sites + [item.intent or ""] + item.reason_texts).lower()
        return any(site in words for site in self.rules.lines.palliative_sites)

    # -- placing one therapy ---------------------------------------------------------------------
    def _place(self, item: Therapy) -> None:
        kind = self.rules.backbone(item.cls)
        run = self.runs.get(kind) if kind else None
        current = self.lines[-1] if self.lines else None
        if run and self._continues_run(run, item):
            self._continue_backbone(run, item)
            return
        if current and (rule := self._joins_regimen(current, item)):
            self._add(current, item, rule)
            if kind:
                self.runs[kind] = BackboneRun(kind, current, [item], item if item.explicit_stop else None)
            return
        if current and not kind and (rule := self._continues_line(current, item)):
            self._add(current, item, rule)
            return
        self._new_line(item, kind)

    def _continue_backbone(self, run: BackboneRun, item: Therapy) -> None:
        previous = next((i for i in reversed(run.items) if i.agent_code == item.agent_code), run.items[-1])
        rule = f"LOT-{run.kind}-ESCALATE" if _escalates(previous, item) else f"LOT-{run.kind}-CONTINUE"
        run.items.append(item)
        if item.explicit_stop:
            run.stop = item
        if run.line is self.lines[-1]:
            self._add(run.line, item, rule)
        else:
            (self._latest_started_by(item) or self.lines[-1]).add(item, "backbone", rule)

    def _new_line(self, item: Therapy, kind: str | None) -> None:
        line = Line(self.tl)
        current = self.lines[-1] if self.lines else None
        run = self.runs.get(kind) if kind else None
        if kind:
            rule = f"LOT-{kind}-START" if not run else f"LOT-{kind}-RESTART" if run.stop else "LOT-GAP"
        elif current and self._same_therapy(current, item):
            rule = "LOT-GAP"
        else:
            rule = "LOT-NEW-THERAPY"
        self._add(line, item, rule)
        if not kind:
            for running in self._running_backbone(item):
                line.add(running, "backbone", f"LOT-{self.rules.backbone(running.cls)}-BACKBONE")
        self.lines.append(line)
        if kind:
            self.runs[kind] = BackboneRun(kind, line, [item], item if item.explicit_stop else None)

    # -- the rules -------------------------------------------------------------------------------
    def _joins_regimen(self, line: Line, item: Therapy) -> str | None:
        if line.linked_to(item):
            return "LOT-REGIMEN-LINK"
        if any(self.tl.within(start(m), start(item), self.rules.regimen_days) for m in line.first):
            systemic = {self.rules.modality(i.cls) for i in line.first} | {self.rules.modality(item.cls)}
            return "LOT-CHEMORADIATION" if {"systemic", "radiotherapy"} <= systemic else "LOT-REGIMEN-WINDOW"
        return None

    def _agent_keys(self, item: Therapy) -> list[str]:
        if self.rules.is_local(item.cls):
            return [f"class:{item.cls}"]
        # By agent (through its substitution group) and by the recorded code: a procedure that gave an agent
        # (PRRT sessions, one with its pharmacy record folded in) stays the same therapy as its sister sessions.
        return [f"agent:{self.rules.lines.substitute.get(a, a)}" for a in item.agents] + [f"code:{item.agent_code}"]

    def _same_therapy(self, line: Line, item: Therapy) -> list[Therapy]:
        found: dict[str, Therapy] = {}
        for key in self._agent_keys(item):
            for other in line.by_agent.get(key, []):
                found[other.key] = other
        return list(found.values())

    def _add(self, line: Line, item: Therapy, rule: str) -> None:
        """A line therapy joins `line`; it is indexed by agent (or local class) for continuation checks."""
        line.add(item, "line", rule)
        for key in self._agent_keys(item):
            line.by_agent.setdefault(key, []).append(item)

    def _continues_line(self, line: Line, item: Therapy) -> str | None:
        same = self._same_therapy(line, item)
        if same and not self._gap_exceeded(same, item):
            if self.rules.is_local(item.cls):
                return "LOT-LOCAL-REPEAT"
            exact = {a for s in same for a in s.agents}
            return "LOT-SUBSTITUTION" if item.agents and not set(item.agents) & exact else "LOT-CONTINUATION"
        if same and item.agents and set(item.agents) <= self.rules.lines.gap_exempt and not any(
                s.explicit_stop or end(s) in self.tl.anchored for s in same):
            return "LOT-GAP-EXEMPT"  # refills without a recorded end: silence is not a stop
        if (not same and item.agents and set(item.agents) <= self.rules.lines.additions
                and not self._gap_exceeded(line.items(), item) and not self._new_regimen_near(line, item)):
            return "LOT-ADDITION"
        if not same and self._switch_maintenance(line, item):
            line.switched_to = sorted(set(line.switched_to) | set(item.agents))
            line.induction_agents = sorted({a for i in line.items() for a in i.agents if a not in item.agents})
            return "LOT-SWITCH-MAINTENANCE"
        return None

    def _switch_maintenance(self, line: Line, item: Therapy) -> bool:
        """A switch-maintenance agent (the indication's table) started after the last dose of a platinum
        induction, within the gap and with no progression recorded since the line began: the same line."""
        lines = self.rules.lines
        if not item.agents or not set(item.agents) <= lines.switch_agents or line.switched_to:
            return False
        induction = [i for i in line.items() if set(i.agents) & lines.switch_after]
        if not induction or not all(self.tl.le(end(i), start(item)) for i in induction):
            return False
        if self._gap_exceeded(line.items(), item):
            return False
        return not any(self.tl.lt(start(f), p) and self.tl.le(p, start(item)) for p in self.progression for f in line.first)

    def _new_regimen_near(self, line: Line, item: Therapy) -> bool:
        """Another agent new to the line starts within the regimen window of `item`: item is part of a new
        regimen (FOLFIRI + bevacizumab after FOLFOX), not an addition to the running one."""
        frame = self._frame
        if frame is None:
            return False
        low = self.tl.low(start(item), frame)
        if not math.isfinite(low):
            return False
        present = set(line.by_agent)
        window = self.rules.regimen_days
        lo, hi = bisect.bisect_left(self._lows, low - window - 1), bisect.bisect_right(self._lows, low + window + 1)
        for other in self._by_low[lo:hi]:
            if other is item or self.rules.role(other.cls) != "therapy" or not self.tl.within(start(item), start(other), window):
                continue
            if not set(self._agent_keys(other)) & present and not set(other.agents) <= self.rules.lines.additions:
                return True
        return False

    def _gap_exceeded(self, earlier: list[Therapy], item: Therapy) -> bool:
        # Read from the latest record: the one that continues is almost always the last one.
        return all(self.tl.lt(end(b), start(item), self.rules.gap_days) for b in reversed(earlier))

    def _continues_run(self, run: BackboneRun, item: Therapy) -> bool:
        if self._gap_exceeded(run.items, item):
            return False
        if run.stop is None:
            return True
        # After a recorded stop only a start proven to fall within the regimen window of that stop continues.
        return self.tl.diff(end(run.stop), start(item))[1] <= self.rules.regimen_days

    def _running_backbone(self, item: Therapy) -> list[Therapy]:
        """Exposures of each backbone run still going when `item` starts (or within the regimen window before it).

        An exposure followed by a later one of the same agent (a dose step, a new injection) counts only if its
        own end is proven to reach the new therapy's start.
        """
        found = []
        tl = self.tl
        for kind in sorted(self.runs):
            items, seen, later_same = self.runs[kind].items, set(), []
            for s in reversed(items):
                later_same.append(s.agent_code in seen)
                seen.add(s.agent_code)
            later_same.reverse()
            found += [s for n, s in enumerate(items)
                      if not tl.lt(end(s), start(item), self.rules.regimen_days)
                      and (not later_same[n] or tl.le(start(item), end(s)))]
        return found

    def _index_starts(self) -> None:
        """Per frame, the suffix minima of the lines' earliest possible starts: lines that cannot have started by
        a time are skipped in one bisection (a therapy proven to start before X has its earliest time <= X's)."""
        self._suffix: dict[str, list[float]] = {}
        for frame in self.tl.frames():
            lows = [min((self.tl.low(start(m), frame) for m in line.first), default=INF) for line in self.lines]
            suffix, best = [INF] * len(lows), INF
            for n in range(len(lows) - 1, -1, -1):
                best = min(best, lows[n])
                suffix[n] = best
            self._suffix[frame] = suffix

    def _latest_started_by(self, item: Therapy) -> Line | None:
        last = len(self.lines)
        for frame, suffix in getattr(self, "_suffix", {}).items():
            low = self.tl.low(start(item), frame)
            if low != -INF and math.isfinite(low) and len(suffix) == len(self.lines):
                last = min(last, bisect.bisect_right(suffix, low + EPS))
        for line in reversed(self.lines[:last]):
            # Same-day supportive care (the antiemetic before the infusion) accompanies that day's line too.
            if any(self.tl.le(start(m), start(item)) or self.tl.within(start(m), start(item), 0) for m in line.first):
                return line
        return None

    def _maintenance(self, line: Line) -> None:
        """Agents of the induction that stop while others go on: continuation maintenance, flagged on the line.

        Only agents of the induction count as going on: an agent added later (LOT-ADDITION, a planned sequence
        such as AC then T) is not maintenance of the agents it follows."""
        opened = {key for rule, key in line.fired if rule in INDUCTION_RULES or rule.endswith(("-START", "-RESTART"))}
        induction = {a for i in line.items() if i.key in opened for a in i.agents}
        items = [i for i in line.items() if i.agents and set(i.agents) <= induction]
        agents = sorted({a for i in items for a in i.agents})
        if len(agents) < 2:
            return
        exposures = {a: [i for i in items if a in i.agents] for a in agents}
        latest = extremes(self.tl, [i for i in items], latest=True)

        def stopped_before(agent: str, later: Therapy) -> bool:
            return all(self.tl.lt(end(e), start(later), self.rules.regimen_days) for e in reversed(exposures[agent]))
        dropped = sorted({a for i in latest for a in agents if a not in i.agents and stopped_before(a, i)})
        if dropped:
            line.dropped = dropped
            line.maintenance = sorted(set(agents) - set(dropped))
            going_on = next(i for i in latest if any(a not in i.agents for a in dropped))
            line.add(going_on, "line", "LOT-MAINTENANCE")


def _escalates(previous: Therapy, item: Therapy) -> bool:
    a, b = previous.daily_dose, item.daily_dose
    return bool(a and b and a[1] == b[1] and b[0] > a[0] + 1e-9)


def modality(line: Line, rules: RuleBook) -> str:
    found = {rules.modality(i.cls) for i in line.items()}
    if len(found) == 1:
        return found.pop()
    if found == {"systemic", "radiotherapy"}:
        return "chemoradiation"
    return "combined"
