"""Resolves the times of a case's facts: absolute dates, ages, and times relative to other facts.

Every time is kept as an interval [lo, hi] in days on one of three frames, so that "some time after
the surgery" stays an open interval instead of becoming an invented date:
  age       days since birth (the case gives an age at presentation, or a birth date);
  date      days since 0001-01-01 (proleptic Gregorian ordinal);
  relative  days since presentation, when neither an age nor a date is known.
"""
from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass, field

from mappings.errors import InputError, Issue
from mappings.terminology import time_unit_days

UNIT_DAYS = time_unit_days()  # UCUM code -> days (terminology/ucum_time_units.csv)
UNIT_PRECISION = {"h": "day", "d": "day", "wk": "day", "mo": "month", "a": "year"}
PRECISION_RANK = {"day": 0, "month": 1, "year": 2, "unknown": 3}
RESERVED_IDS = ("presentation", "birth", "death")
INF = math.inf


@dataclass(frozen=True)
class Relation:
    """The relative expression as written, kept for cqf-relativeDateTime."""

    target: str
    edge: str
    relationship: str  # FHIR action-relationship-type code: after-start, after-end, before-start, concurrent-with-start...
    offset: dict | None
    text: str | None


@dataclass(frozen=True)
class Point:
    frame: str
    lo: float
    hi: float
    precision: str
    approximate: bool = False
    relation: Relation | None = None
    text: str | None = None
    anchor_date: dt.date | None = field(default=None, compare=False)  # date frame: the calendar date of lo

    @property
    def exact(self) -> bool:
        return self.lo == self.hi


def _coarser(a: str, b: str) -> str:
    return a if PRECISION_RANK[a] >= PRECISION_RANK[b] else b


def parse_partial_date(value: str) -> tuple[dt.date, dt.date, str]:
    parts = [int(p) for p in value.split("-")]
    if len(parts) == 1:
        return dt.date(parts[0], 1, 1), dt.date(parts[0], 12, 31), "year"
    if len(parts) == 2:
        last = calendar.monthrange(parts[0], parts[1])[1]
        return dt.date(parts[0], parts[1], 1), dt.date(parts[0], parts[1], last), "month"
    return dt.date(*parts), dt.date(*parts), "day"


def add_offset(day: dt.date, value: float, unit: str, sign: int = 1) -> dt.date:
    """Calendar arithmetic: months and years move the calendar, shorter units move days."""
    if unit in ("mo", "a") and float(value).is_integer():
        months = int(value) * (12 if unit == "a" else 1) * sign
        y, m = divmod(day.month - 1 + months, 12)
        year, month = day.year + y, m + 1
        return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
    return day + dt.timedelta(days=sign * value * UNIT_DAYS[unit])


def format_date(day: dt.date, precision: str) -> str:
    if precision == "year":
        return f"{day.year:04d}"
    if precision == "month":
        return f"{day.year:04d}-{day.month:02d}"
    return day.isoformat()


@dataclass
class Slot:
    """One time to resolve: a fact's start, end, or a dosage step."""

    key: str
    path: str
    expr: dict = field(default_factory=dict)      # the time expression as written; empty for a derived slot
    base: str | None = None                       # derived slot: base key + duration
    duration: dict = field(default_factory=dict)


def _edge_key(target: str, edge: str | None, kind: str, slots: dict[str, Slot]) -> tuple[str, str]:
    has_end = f"{target}.end" in slots
    if edge is None:
        edge = "end" if kind == "after" and has_end else "start"
    if edge == "end" and not has_end:
        return f"{target}.start", "end-unknown"
    return f"{target}.{edge}", edge


def _deps(slot: Slot, slots: dict[str, Slot]) -> list[str]:
    if slot.base:
        return [slot.base]
    for kind in ("after", "before", "at"):
        if kind in slot.expr:
            return [_edge_key(slot.expr[kind], slot.expr.get("edge"), kind, slots)[0]]
    return []


class Timeline:
    """Resolved times of one case, by slot key ("<factId>.start", "<factId>.end", "<factId>.dosages[i]")."""

    def __init__(self, case: dict):
        self.case = case
        self.points: dict[str, Point] = {}
        self.slots: dict[str, Slot] = {}
        self._issues: list[Issue] = []
        self._collect()
        self._resolve()
        self._check_life_span()
        if self._issues:
            raise InputError(self._issues, 422)

    def start(self, fact_id: str) -> Point | None:
        return self.points.get(f"{fact_id}.start")

    def fact_start(self, fact_id: str) -> Point:
        """The start of a fact that has one: the case schema requires a time on every event fact, and a time that
        does not resolve fails the case (InputError) before anything is mapped."""
        return self.points[f"{fact_id}.start"]

    def end(self, fact_id: str) -> Point | None:
        return self.points.get(f"{fact_id}.end")

    def at(self, key: str) -> Point | None:
        return self.points.get(key)

    # -- collection -------------------------------------------------------------------------------
    def _add(self, key: str, path: str, expr: dict | None = None, base: str | None = None,
             duration: dict | None = None) -> None:
        self.slots[key] = Slot(key, path, expr or {}, base, duration or {})

    def _collect(self) -> None:
        case = self.case
        patient = case.get("patient", {})
        if patient.get("death"):
            self._add("death.start", "$.patient.death.time", patient["death"]["time"])
        spans = {"conditions": ("onset", "abatement"), "observations": ("time", None),
                 "procedures": ("time", "end"), "medications": ("start", "end"), "outcomes": ("time", None)}
        for section, (start_field, end_field) in spans.items():
            for i, fact in enumerate(case.get(section, [])):
                fid, path = fact["id"], f"$.{section}[{i}]"
                self._add(f"{fid}.start", f"{path}.{start_field}", fact[start_field])
                if end_field and fact.get(end_field):
                    self._add(f"{fid}.end", f"{path}.{end_field}", fact[end_field])
                elif fact.get("duration"):
                    self._add(f"{fid}.end", f"{path}.duration", base=f"{fid}.start", duration=fact["duration"])
                for j, dosage in enumerate(fact.get("dosages", [])):
                    if dosage.get("start"):
                        self._add(f"{fid}.dosages[{j}]", f"{path}.dosages[{j}].start", dosage["start"])

    # -- resolution -------------------------------------------------------------------------------
    def _builtin(self) -> None:
        patient = self.case.get("patient", {})
        age = patient.get("ageAtPresentation")
        birth = patient.get("birthDate")
        pres_date = patient.get("presentationDate")
        if pres_date:
            lo, hi, prec = parse_partial_date(pres_date)
            self.points["presentation.start"] = Point("date", lo.toordinal(), hi.toordinal(), prec, anchor_date=lo)
        elif age:
            days = age["value"] * UNIT_DAYS[age["unit"]]
            self.points["presentation.start"] = Point("age", days, days, UNIT_PRECISION[age["unit"]])
        elif birth:
            self.points["presentation.start"] = Point("relative", 0.0, INF, "unknown")
        else:
            self.points["presentation.start"] = Point("relative", 0.0, 0.0, "day")
        if birth:
            lo, hi, prec = parse_partial_date(birth)
            self.points["birth.start"] = Point("date", lo.toordinal(), hi.toordinal(), prec, anchor_date=lo)
        elif age and not pres_date:
            self.points["birth.start"] = Point("age", 0.0, 0.0, "day")

    def _resolve(self) -> None:
        self._builtin()
        pending = dict(self.slots)
        for key, slot in list(pending.items()):
            for dep in _deps(slot, self.slots):
                if dep not in self.slots and dep not in self.points:
                    target = dep.rsplit(".", 1)[0]
                    self._issues.append(Issue(f"{slot.path}", f"refers to '{target}', which is not a fact of this case", "not-found"))
                    pending.pop(key, None)
        progress = True
        while pending and progress:
            progress = False
            for key in list(pending):
                slot = pending[key]
                if all(d in self.points for d in _deps(slot, self.slots)):
                    self.points[key] = self._point(slot)
                    del pending[key]
                    progress = True
        unresolved = [s for k, s in pending.items() if all(d in self.slots or d in self.points for d in _deps(s, self.slots))]
        for slot in unresolved:
            self._issues.append(Issue(slot.path, "timeline cycle: this time depends, through other facts, on itself", "invariant"))

    def _point(self, slot: Slot) -> Point:
        if slot.base:
            base = self.points[slot.base]
            return _shift(base, slot.duration, 1, None, None)
        expr = slot.expr
        if "date" in expr:
            lo, hi, prec = parse_partial_date(expr["date"])
            return Point("date", lo.toordinal(), hi.toordinal(), prec, expr.get("approximate", False), None, expr.get("text"), lo)
        if "age" in expr:
            days = expr["age"]["value"] * UNIT_DAYS[expr["age"]["unit"]]
            return Point("age", days, days, UNIT_PRECISION[expr["age"]["unit"]], expr.get("approximate", False), None, expr.get("text"))
        kind = next(k for k in ("after", "before", "at") if k in expr)
        dep_key, edge = _edge_key(expr[kind], expr.get("edge"), kind, self.slots)
        target = self.points[dep_key]
        offset = expr.get("offset")
        edge_name = "end" if edge in ("end", "end-unknown") else "start"
        if kind == "at":
            relationship = f"concurrent-with-{edge_name}"
        else:
            relationship = f"{kind}-{edge_name}"
        relation = Relation(expr[kind], edge_name, relationship, offset, expr.get("text"))
        if edge == "end-unknown":
            target = Point(target.frame, target.lo, INF, target.precision, target.approximate, anchor_date=target.anchor_date)
        sign = -1 if kind == "before" else 1
        return _shift(target, offset, sign, relation, expr.get("text"), kind != "at", expr.get("approximate", False))

    def _check_life_span(self) -> None:
        birth = self.points.get("birth.start")
        death = self.points.get("death.start")
        for key, point in self.points.items():
            slot = self.slots.get(key)
            if slot is None:
                continue
            if birth and point.frame == birth.frame and point.hi < birth.lo:
                self._issues.append(Issue(slot.path, "this time falls before the patient's birth", "invariant"))
            if death and key != "death.start" and (self._follows_death(key) or point.frame == death.frame and point.lo > death.hi):
                self._issues.append(Issue(slot.path, "this time falls after the patient's death", "invariant"))

    def _follows_death(self, key: str) -> bool:
        """True when the time is defined, through 'after'/'at' steps, as later than the death itself."""
        strictly_after = False
        seen = set()
        while key in self.slots and key not in seen:
            if key == "death.start":
                return strictly_after
            seen.add(key)
            slot = self.slots[key]
            if slot.base:
                strictly_after = strictly_after or slot.duration["value"] > 0
                key = slot.base
                continue
            kind = next((k for k in ("after", "before", "at") if k in slot.expr), None)
            if kind is None or kind == "before":
                return False
            strictly_after = strictly_after or kind == "after"
            key = _edge_key(slot.expr[kind], slot.expr.get("edge"), kind, self.slots)[0]
        return False


def _shift(target: Point, offset: dict | None, sign: int, relation: Relation | None, text: str | None,
           open_when_no_offset: bool = True, approximate: bool = False) -> Point:
    """target + offset; with no offset an 'after'/'before' is an open interval on that side."""
    approx = approximate or target.approximate
    if offset is None:
        if not open_when_no_offset:
            return Point(target.frame, target.lo, target.hi, target.precision, approx, relation, text, target.anchor_date)
        if sign > 0:
            return Point(target.frame, target.lo, INF, "unknown", approx, relation, text, target.anchor_date)
        return Point(target.frame, -INF, target.hi, "unknown", approx, relation, text, None)
    days = sign * offset["value"] * UNIT_DAYS[offset["unit"]]
    precision = _coarser(target.precision, UNIT_PRECISION[offset["unit"]])
    anchor = None
    if target.anchor_date is not None:
        anchor = add_offset(target.anchor_date, offset["value"], offset["unit"], sign)
    approx = approx or bool(offset.get("approximate"))
    return Point(target.frame, target.lo + days, target.hi + days, precision, approx, relation, text, anchor)
