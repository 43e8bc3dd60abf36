"""Resolved timeline points as FHIR elements, keeping precision and the relative expression visible."""
from __future__ import annotations

import math

from mappings.fhir_vocabulary import EVENT_TIME_URL, RELATIVE_URL, UCUM
from mappings.timeline import Point, UNIT_DAYS, format_date

UNIT_NAMES = {"h": "hours", "d": "days", "wk": "weeks", "mo": "months", "a": "years"}


def duration(value: float, unit: str) -> dict:
    return {"value": _number(value), "unit": UNIT_NAMES[unit], "system": UCUM, "code": unit}


def age(days: float) -> dict:
    return {"value": _number(round(days / UNIT_DAYS["a"], 2)), "unit": "years", "system": UCUM, "code": "a"}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def age_range(point: Point) -> dict:
    result = {}
    if math.isfinite(point.lo) and point.lo >= 0:
        result["low"] = age(point.lo)
    if math.isfinite(point.hi):
        result["high"] = age(point.hi)
    return result


def date_text(point: Point) -> str | None:
    """The calendar value of a date-frame point at its precision, when it is known."""
    if point.frame != "date" or point.anchor_date is None or point.precision == "unknown":
        return None
    return format_date(point.anchor_date, point.precision)


def relative_extension(point: Point, target_url: str | None, target_path: str) -> dict | None:
    """cqf-relativeDateTime: the relation to another event as given in the case (offset 0..open when unknown)."""
    relation = point.relation
    if relation is None or target_url is None:
        return None
    if relation.offset:
        offset = {"url": "offset", "valueDuration": duration(relation.offset["value"], relation.offset["unit"])}
    elif relation.relationship.startswith("concurrent"):
        offset = {"url": "offset", "valueDuration": duration(0, "d")}
    else:
        offset = {"url": "offset", "valueRange": {"low": duration(0, "d")}}
    return {
        "url": RELATIVE_URL,
        "extension": [
            {"url": "target", "valueReference": {"reference": target_url}},
            {"url": "targetPath", "valueString": target_path},
            {"url": "relationship", "valueCode": relation.relationship},
            offset,
        ],
    }


def _point_value(name: str, point: Point) -> list[dict]:
    if point.frame == "age":
        if point.exact:
            return [{"url": name, "valueAge": age(point.lo)}]
        rng = age_range(point)
        return [{"url": name, "valueRange": rng}] if rng else []
    text = date_text(point)
    return [{"url": name, "valueDateTime": text}] if text else []


def event_time_extension(start: Point, end: Point | None = None, length: dict | None = None) -> dict:
    """Our documented extension carrying frame, bounds and precision of an event, for every resource type;
    `length` (a case duration) keeps "for 9 months" exact even when both ends are open intervals."""
    parts: list[dict] = [{"url": "frame", "valueCode": start.frame}]
    parts += _point_value("start", start)
    parts.append({"url": "startPrecision", "valueCode": start.precision})
    if end is not None:
        parts += _point_value("end", end)
        parts.append({"url": "endPrecision", "valueCode": end.precision})
    if length:
        parts.append({"url": "duration", "valueDuration": duration(length["value"], length["unit"])})
    if start.approximate or (end is not None and end.approximate):
        parts.append({"url": "approximate", "valueBoolean": True})
    if start.text:
        parts.append({"url": "text", "valueString": start.text})
    if end is not None and end.text:
        parts.append({"url": "endText", "valueString": end.text})
    return {"url": EVENT_TIME_URL, "extension": parts}


def standard_time(prefix: str, start: Point, end: Point | None, allow_age: bool) -> dict:
    """The core element for an event's time (performed[x], onset[x], effective[x]) where one fits.

    Age and Range exist only on Procedure.performed and Condition.onset/abatement; dates go in dateTime or
    Period at their own precision. Nothing is written when no value is known: the event-time extension
    and cqf-relativeDateTime then carry what is known, instead of an invented date.
    """
    if start.frame == "age" and allow_age:
        if end is None and start.exact:
            return {f"{prefix}Age": age(start.lo)}
        hi = end.hi if end is not None else start.hi
        rng = age_range(Point("age", start.lo, hi, start.precision))
        return {f"{prefix}Range": rng} if rng else {}
    begin = date_text(start)
    finish = date_text(end) if end is not None else None
    if end is not None and (begin or finish):
        return {f"{prefix}Period": {k: v for k, v in (("start", begin), ("end", finish)) if v}}
    if begin:
        return {f"{prefix}DateTime": begin}
    return {}
