"""Times and intervals as the summary writes them: bounds on a frame, with a precision, never a guessed date."""
from __future__ import annotations

import datetime as dt
import math

from mappings.fhir_vocabulary import EVENT_TIME_URL
from treatment_lines.timeline import FRAMES, Node, Timeline, origin

DAYS_PER_YEAR = 365.25
EXACT_DAYS = 2.0  # bounds this close give a number of days (one day of date precision on each side)


def _fmt(frame: str, days: float) -> float | str | None:
    if not math.isfinite(days):
        return None
    if frame == "age":
        return round(days / DAYS_PER_YEAR, 2)
    if frame == "date":
        return dt.date.fromordinal(max(1, math.floor(days))).isoformat()
    return round(days, 1)


def _precision(width: float) -> str:
    if width <= 1.0:
        return "day"
    if width <= 31.0:
        return "month"
    if width <= 366.0:
        return "year"
    return "unknown"


def time_span(tl: Timeline, nodes: list[Node], latest: bool = False) -> dict | None:
    """The earliest (or latest) of some events as {frame, low, high, precision}; age in years, date as ISO."""
    placed = [p for p in (tl.placed(n) for n in nodes) if p]
    if not placed:
        return None
    frame = min((p[0] for p in placed), key=FRAMES.index)
    bounds = [tl.diff(origin(frame), n) for n in nodes]
    pick = max if latest else min
    lo, hi = pick(b[0] for b in bounds), pick(b[1] for b in bounds)
    return {"frame": frame, "low": _fmt(frame, lo), "high": _fmt(frame, hi), "precision": _precision(hi - lo)}


def interval(tl: Timeline, froms: list[Node], tos: list[Node], what: str, to_latest: bool = False) -> dict:
    """Days from the earliest of `froms` to the earliest (or latest) of `tos`: exact when the bounds allow.

    min(tos) - min(froms) = max over f of min over t of (t - f); bounds of max/min of differences are taken
    term by term, so they are valid even when it is not known which event came first.
    """
    if not froms or not tos:
        return not_computable(f"{what}: no events to measure")
    inner = max if to_latest else min
    per_from = [(inner(tl.diff(f, t)[0] for t in tos), inner(tl.diff(f, t)[1] for t in tos)) for f in froms]
    lo, hi = max(p[0] for p in per_from), max(p[1] for p in per_from)
    if hi - lo <= EXACT_DAYS:
        return {"days": round((lo + hi) / 2), "minDays": None, "maxDays": None, "reason": None}
    low = math.floor(lo) if math.isfinite(lo) else None
    high = math.ceil(hi) if math.isfinite(hi) else None
    return {"days": None, "minDays": low, "maxDays": high,
            "reason": f"{what}: the recorded times give only bounds (a time known only as before or after another event)"}


def not_computable(reason: str) -> dict:
    return {"days": None, "minDays": None, "maxDays": None, "reason": reason}


def approximate_keys(resources: dict[str, dict]) -> set[str]:
    """Keys of the resources whose event-time says `approximate` (a case report's "9 months later", "2 years"),
    on the resource or on Patient._deceased[x]: figures measured from or to them are approximate too."""
    found = set()
    for key, resource in resources.items():
        holders = [resource] + [v for k, v in resource.items() if k.startswith("_deceased") and isinstance(v, dict)]
        if any(part.get("url") == "approximate" and part.get("valueBoolean") is True
               for holder in holders for ext in holder.get("extension") or [] if ext.get("url") == EVENT_TIME_URL
               for part in ext.get("extension") or []):
            found.add(key)
    return found


def flag_approximate(figure: dict, nodes: list[Node], approximate: set[str]) -> dict:
    """A duration or time to next treatment with `approximate: true` when one of the events it is measured
    between has an approximate time; the bounds stay as computed, the flag says they rest on approximate offsets."""
    computed = figure["days"] is not None or figure["minDays"] is not None or figure["maxDays"] is not None
    # Both ends on one resource (a one-day procedure): its approximate placement does not touch the figure.
    between = len({n[0] for n in nodes}) > 1
    return figure | {"approximate": computed and between and any(n[0] in approximate for n in nodes)}
