"""Time constraints read from FHIR elements: absolute bounds per frame, and relations between events.

Every event has a start and an end node. An absolute constraint puts a node in [lo, hi] days on a frame
('date': days since 0001-01-01, 'age': days since birth, 'relative': days since presentation); a relation
says lo <= t(node) - t(target) <= hi. Values are widened by their precision (an age of 50 years at year
precision lies in [50, 51) years; '2020-03' is the whole of March) and by the rounding of decimal ages,
so that nothing is read as more exact than it was written.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mappings.fhir_vocabulary import EVENT_TIME_URL, RELATIVE_URL
from mappings.terminology import time_unit_days

INF = math.inf
UNITS = time_unit_days(with_words=True)  # by UCUM code, and by the unit words some senders write instead
PRECISION_DAYS = {"day": 1.0, "month": 31.0, "year": 366.0}
# Calendar months and years are not fixed lengths: an offset of n months is n x 30.44 days give or take this much.
CALENDAR_SLACK = {"mo": 1.6, "month": 1.6, "months": 1.6, "a": 1.0, "year": 1.0, "years": 1.0}
EPS = 1e-6


@dataclass(frozen=True)
class Absolute:
    node: tuple[str, str]
    frame: str
    lo: float
    hi: float


@dataclass(frozen=True)
class Relative:
    node: tuple[str, str]
    target: tuple[str, str]  # target node; the target key is a raw reference until resolved
    lo: float
    hi: float


def _decimals(value: float) -> int:
    text = repr(float(value))
    return 0 if text.endswith(".0") else len(text.split(".")[1])


def quantity_days(q: object, precision: str | None = None, age: bool = False) -> tuple[float, float] | None:
    """An Age/Duration as [lo, hi] days, widened by its precision or by the rounding of its decimals."""
    if not isinstance(q, dict) or q.get("value") is None:
        return None
    unit = q.get("code") or q.get("unit") or "a"
    per = UNITS.get(unit)
    if per is None:
        return None
    value = float(q["value"])
    days = value * per
    # Decimal years are rounded to two places by our mapper (about 1.8 days); other units to their last digit.
    places = max(_decimals(value), 2) if per >= 365 else _decimals(value)
    rounding = 0.5 * 10 ** -places * per if age else 0.0
    if precision in PRECISION_DAYS:
        return days - rounding, days + rounding + PRECISION_DAYS[precision] - EPS
    if age and value.is_integer() and unit in ("a", "year", "years") and precision is None:
        return days, days + per - EPS  # a whole number of years, as ages are usually written
    slack = 0.0 if age else CALENDAR_SLACK.get(unit, 0.0) * abs(value)
    return days - rounding - slack, days + rounding + slack


def range_days(rng: object, age: bool = False) -> tuple[float, float]:
    """A Range as [lo, hi] days; an open side (or a Range that is not one) is unbounded."""
    rng = rng if isinstance(rng, dict) else {}
    low = quantity_days(rng.get("low"), age=age)
    high = quantity_days(rng.get("high"), age=age)
    return (low[0] if low else -INF), (high[1] if high else INF)


@lru_cache(maxsize=4096)
def date_bounds(text: str) -> tuple[float, float] | None:
    """A FHIR date/dateTime as [first, last] day ordinals of the period it names."""
    try:
        parts = text[:10].split("-")
        year = int(parts[0])
        if len(parts) == 1:
            return float(dt.date(year, 1, 1).toordinal()), dt.date(year, 12, 31).toordinal() + 1 - EPS
        month = int(parts[1])
        if len(parts) == 2:
            nxt = dt.date(year + month // 12, month % 12 + 1, 1)
            return float(dt.date(year, month, 1).toordinal()), nxt.toordinal() - EPS
        day = dt.date(year, month, int(parts[2])).toordinal()
        return float(day), day + 1 - EPS
    except (ValueError, IndexError):
        return None


def _value(ext: dict) -> tuple[str, Any] | None:
    for name, value in ext.items():
        if name.startswith("value"):
            return name[5:], value
    return None


def _point(frame: str, kind: str | None, value: object, precision: str | None) -> tuple[float, float] | None:
    if kind == "Age" or kind == "Quantity":
        return quantity_days(value, precision, age=True)
    if kind == "Range":
        return range_days(value, age=True)
    if (kind == "DateTime" or kind == "Date") and isinstance(value, str):
        return date_bounds(value)
    return None


def event_time(key: str, ext: dict) -> list[Absolute]:
    """Our event-time extension: frame, start/end (Age, Range or dateTime) and their precision."""
    parts = {p.get("url"): p for p in ext.get("extension", [])}
    frame = (_value(parts["frame"]) or (None, "date"))[1] if "frame" in parts else "date"
    found = []
    for edge in ("start", "end"):
        if edge not in parts:
            continue
        kind, value = _value(parts[edge]) or (None, None)
        precision = (_value(parts.get(f"{edge}Precision", {})) or (None, None))[1]
        bounds = _point(frame, kind, value, precision if precision != "unknown" else None)
        if bounds and (math.isfinite(bounds[0]) or math.isfinite(bounds[1])):
            found.append(Absolute((key, edge), frame, *bounds))
    return found


def relative_time(key: str, ext: dict) -> Relative | None:
    """cqf-relativeDateTime: this event's start relative to another event's start or end."""
    parts = {p.get("url"): p for p in ext.get("extension", [])}
    target = parts.get("target", {}).get("valueReference", {}).get("reference")
    relationship = parts.get("relationship", {}).get("valueCode", "after-start")
    if not target:
        return None
    lo, hi = 0.0, INF
    offset = parts.get("offset", {})
    if "valueDuration" in offset:
        lo, hi = quantity_days(offset["valueDuration"]) or (0.0, INF)
    elif "valueRange" in offset:
        lo, hi = range_days(offset["valueRange"])
        lo = max(lo, 0.0)
    if relationship.startswith("concurrent"):
        lo, hi = (lo, hi) if "valueDuration" in offset else (0.0, 0.0)
    edge = "end" if relationship.endswith("-end") or relationship == "after" else "start"
    if relationship.startswith("before"):
        lo, hi = -hi, -lo
    return Relative((key, "start"), (target, edge), lo, hi)


def event_length(key: str, ext: dict) -> Relative | None:
    """The event-time `duration` part: end = start + duration, exact even when both ends are open."""
    part = next((p for p in ext.get("extension", []) if p.get("url") == "duration"), None)
    days = quantity_days(part["valueDuration"]) if part and "valueDuration" in part else None
    return Relative((key, "end"), (key, "start"), *days) if days else None


def extension_times(key: str, extensions: list[dict]) -> tuple[list[Absolute], list[Relative]]:
    absolute, relative = [], []
    for ext in extensions or []:
        if ext.get("url") == EVENT_TIME_URL:
            absolute += event_time(key, ext)
            length = event_length(key, ext)
            if length:
                relative.append(length)
        elif ext.get("url") == RELATIVE_URL:
            rel = relative_time(key, ext)
            if rel:
                relative.append(rel)
    return absolute, relative


def _element(key: str, resource: dict, prefix: str, edge: str = "start") -> list[Absolute]:
    """performed[x], onset[x], effective[x], abatement[x]: dateTime, Period, Age or Range."""
    found = []
    for suffix in ("DateTime", "Instant", "Period", "Age", "Range", "String"):
        value = resource.get(prefix + suffix)
        if value is None:
            continue
        if suffix == "Period":
            for part in ("start", "end"):
                if value.get(part) and (bounds := date_bounds(value[part])):
                    found.append(Absolute((key, part if edge == "start" else edge), "date", *bounds))
        elif suffix in ("DateTime", "Instant") and (bounds := date_bounds(value)):
            found.append(Absolute((key, edge), "date", *bounds))
        elif suffix == "Age" and (bounds := quantity_days(value, age=True)):
            found.append(Absolute((key, edge), "age", *bounds))
        elif suffix == "Range":
            lo, hi = range_days(value, age=True)
            if math.isfinite(lo) or math.isfinite(hi):
                found.append(Absolute((key, edge), "age", lo, hi))
    return found


def standard_times(key: str, resource: dict) -> list[Absolute]:
    """The core time elements of each resource type we read."""
    rtype = resource.get("resourceType")
    if rtype == "Procedure":
        return _element(key, resource, "performed")
    if rtype == "Condition":
        return _element(key, resource, "onset") + _element(key, resource, "abatement", "end")
    if rtype in ("Observation", "MedicationStatement", "MedicationAdministration"):
        return _element(key, resource, "effective")
    if rtype == "MedicationRequest":
        found = []
        for instruction in resource.get("dosageInstruction") or []:
            bounds = ((instruction.get("timing") or {}).get("repeat") or {}).get("boundsPeriod") or {}
            found += _element(key, {"boundsPeriod": bounds}, "bounds")
        if not found and resource.get("authoredOn") and (authored := date_bounds(resource["authoredOn"])):
            # Without dosage bounds the order date is the best start we have; it never gives an end.
            found.append(Absolute((key, "start"), "date", *authored))
        return found
    if rtype == "Patient" and resource.get("deceasedDateTime") and (bounds := date_bounds(resource["deceasedDateTime"])):
        return [Absolute((key, "start"), "date", *bounds)]
    return []


def resource_times(key: str, resource: dict) -> tuple[list[Absolute], list[Relative]]:
    """All constraints of one resource: our extensions win over the core element they restate."""
    extensions = list(resource.get("extension") or [])
    if resource.get("resourceType") == "Patient":
        for name in ("_deceasedDateTime", "_deceasedBoolean"):
            extensions += (resource.get(name) or {}).get("extension", [])
    absolute, relative = extension_times(key, extensions)
    if not absolute:
        absolute = standard_times(key, resource)
    return absolute, relative


def _order_only(resource: dict) -> bool:
    """A MedicationRequest whose only time is authoredOn (no dosage bounds)."""
    if resource.get("resourceType") != "MedicationRequest" or not resource.get("authoredOn"):
        return False
    return not any(((i.get("timing") or {}).get("repeat") or {}).get("boundsPeriod")
                   for i in resource.get("dosageInstruction") or [])


def _medication_token(resource: dict) -> str:
    concept = resource.get("medicationCodeableConcept") or {}
    codes = sorted(f"{c.get('system')}|{c.get('code')}" for c in concept.get("coding") or [] if c.get("code"))
    return repr(codes) if codes else (concept.get("text") or repr(resource.get("medicationReference")))


def point_orders(index) -> set[str]:
    """Orders with only authoredOn that form a series of the same medication: each reads as one administration.

    The last order of a series that is still active keeps an open end (the therapy may be going on)."""
    series: dict[str, list[tuple[float, str, str]]] = {}
    for key, resource in index.of_type("MedicationRequest"):
        if _order_only(resource) and (bounds := date_bounds(resource["authoredOn"])):
            series.setdefault(_medication_token(resource), []).append((bounds[0], key, resource.get("status", "unknown")))
    points: set[str] = set()
    for orders in series.values():
        if len(orders) < 2:
            continue
        orders.sort()
        points |= {key for _, key, _ in orders[:-1]}
        if orders[-1][2] not in ("active", "on-hold", "draft", "unknown"):
            points.add(orders[-1][1])
    return points
