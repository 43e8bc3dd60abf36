"""A patient's procedures as a registry reads them: normalised category, original coding, intent, site,
time with its precision, status and reason, complications, and the Procedure it came from."""
from __future__ import annotations

import csv
import io
import re
from functools import lru_cache
from pathlib import Path

from mappings.fhir_vocabulary import EVENT_TIME_URL, INTENT_URL, LOCAL_EXT, RELATIVE_URL
from mappings.procedure_classes import procedure_classes

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
SESSIONS_URL = f"{LOCAL_EXT}/session-count"
SEGMENT = re.compile(r"segments?\s+((?:[IV]+[ab]?(?:,\s*|\s+and\s+)?)+)", re.IGNORECASE)
# One value per column: a list (sites, segments, complications) gives its count and its first item; the JSON
# record has them all. Times are split into date, age bounds and the relative anchor.
CSV_FIELDS = ("patient", "procedure", "identifier", "category", "category_source", "code_system", "code", "code_display",
              "text", "intent", "site_count", "body_site", "body_site_snomed", "topography_icdo3", "segment_count",
              "segment", "frame", "precision", "approximate", "start_date", "start_age_low", "start_age_high",
              "end_date", "end_age_low", "end_age_high", "age_unit", "duration_value", "duration_unit",
              "relative_relationship", "relative_target", "offset_value", "offset_unit", "offset_low", "offset_high",
              "time_text", "status", "status_reason", "complication_count", "complication", "sessions")


@lru_cache(maxsize=1)
def _code_categories() -> dict[tuple[str, str], str]:
    """The registry column of the one procedure classification table (mappings/procedure_classes.py)."""
    return {key: row.category for key, row in procedure_classes().items() if row.category}


@lru_cache(maxsize=1)
def _keyword_categories() -> list[tuple[re.Pattern, str]]:
    with (MAPPINGS / "procedure_keywords.csv").open(newline="", encoding="utf-8") as handle:
        return [(re.compile(r["pattern"], re.IGNORECASE), r["category"]) for r in csv.DictReader(handle)]


def categorise(code: dict) -> tuple[str, str]:
    """(category, source): the text wins when it names chemoembolization, since no verified code says TACE."""
    text = code.get("text", "") or " ".join(c.get("display", "") for c in code.get("coding", []))
    keyword = next((cat for pattern, cat in _keyword_categories() if pattern.search(text)), None)
    if keyword == "chemoembolization":
        return keyword, "text"
    for coding in code.get("coding", []):
        found = _code_categories().get((coding.get("system"), coding.get("code")))
        if found:
            return found, "code"
    return (keyword, "text") if keyword else ("other", "none")


def _ext(resource: dict, url: str) -> list[dict]:
    return [e for e in resource.get("extension", []) if e.get("url") == url]


def _value(part: dict):
    return next((v for k, v in part.items() if k.startswith("value")), None)


SNOMED = "http://snomed.info/sct"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
FORMAT_VERSION = "2"  # mappings/registry_record_schema.json


def _age(value: dict) -> dict:
    """An Age or Range of ages as {low, high, unit}: an exact age has low == high; an open side is null."""
    if "value" in value:
        return {"low": value["value"], "high": value["value"], "unit": value.get("code", "a")}
    low, high = value.get("low", {}), value.get("high", {})
    return {"low": low.get("value"), "high": high.get("value"), "unit": low.get("code") or high.get("code") or "a"}


def _point(value, precision: str | None) -> dict | None:
    """One end of an event's time: a calendar date at its precision, or an age range; None when nothing is known."""
    if isinstance(value, str):
        return {"date": value, "age": None, "precision": precision or _date_precision(value)}
    if isinstance(value, dict) and value:
        return {"date": None, "age": _age(value), "precision": precision or "unknown"}
    return None


def _date_precision(value: str) -> str:
    return {4: "year", 7: "month"}.get(len(value), "day")


def _quantity(value: dict) -> dict:
    return {"value": value.get("value"), "unit": value.get("code") or value.get("unit")}


def _relative(resource: dict) -> dict | None:
    """The relative anchor as data: relationship, the referenced resource, and the offset (a value, or a range)."""
    found = _ext(resource, RELATIVE_URL)
    if not found:
        return None
    parts = {p["url"]: _value(p) for p in found[0]["extension"]}
    offset = parts.get("offset") or {}
    amount: dict | None
    if "low" in offset or "high" in offset:
        rng = {"low": _quantity(offset["low"]) if "low" in offset else None,
               "high": _quantity(offset["high"]) if "high" in offset else None}
        amount = {"value": None, "unit": None, "range": rng}
    else:
        amount = {**_quantity(offset), "range": None} if offset else None
    return {"relationship": parts.get("relationship"), "target": (parts.get("target") or {}).get("reference"),
            "targetPath": parts.get("targetPath"), "offset": amount}


def _sort_key(start: dict | None) -> tuple:
    if start is None:
        return (2, 0.0)
    if start["date"] is not None:
        return (0, start["date"])
    age = start["age"]
    return (1, next((v for v in (age["low"], age["high"]) if v is not None), 0.0))


def timing(resource: dict) -> dict:
    """frame, start/end (date or age range, each with its precision), duration, approximate flag, the words of the
    source, and the relative anchor, from event-time or else performed[x]."""
    result: dict = {"frame": None, "start": None, "end": None, "precision": "unknown", "duration": None,
                    "approximate": False, "text": None, "relative": _relative(resource)}
    events = _ext(resource, EVENT_TIME_URL)
    if events:
        parts = {p["url"]: _value(p) for p in events[0]["extension"]}
        result.update(frame=parts.get("frame"), precision=parts.get("startPrecision", "unknown"),
                      start=_point(parts.get("start"), parts.get("startPrecision")),
                      end=_point(parts.get("end"), parts.get("endPrecision")),
                      duration=_quantity(parts["duration"]) if parts.get("duration") else None,
                      approximate=bool(parts.get("approximate")), text=parts.get("text"))
        if result["relative"] and result["precision"] == "unknown":
            result["precision"] = "relative"
    elif resource.get("performedDateTime"):
        result.update(frame="date", start=_point(resource["performedDateTime"], None))
    elif resource.get("performedPeriod"):
        period = resource["performedPeriod"]
        result.update(frame="date", start=_point(period.get("start"), None), end=_point(period.get("end"), None))
    elif resource.get("performedAge") or resource.get("performedRange"):
        value = resource.get("performedAge") or resource.get("performedRange") or {}
        result.update(frame="age", start=_point(value, "year" if "value" in value else "unknown"))
    if result["start"] is not None and not events:
        result["precision"] = result["start"]["precision"]
    result["sort"] = _sort_key(result["start"])
    return result


def _segments(sites: list[dict]) -> list[str]:
    found = []
    for site in sites:
        # The text says IVb where the only verified code says IV: read the coding only when there is no text.
        texts = [site["text"]] if site.get("text") else [c.get("display", "") for c in site.get("coding", [])]
        for text in texts:
            for match in SEGMENT.finditer(text):
                found += [s for s in re.split(r",\s*|\s+and\s+", match.group(1).strip()) if s]
    return list(dict.fromkeys(found))


def _coding(codings: list[dict], system: str) -> dict | None:
    found = next((c for c in codings if c.get("system") == system), None)
    return {"code": found.get("code"), "display": found.get("display")} if found else None


def sites(body_sites: list[dict]) -> list[dict]:
    """Each site once: bodySite entries with the same words (a site and its segment code) are one site, with
    every SNOMED code it carries and its ICD-O-3 topography beside them."""
    merged: dict[str, dict] = {}
    for site in body_sites:
        codings = site.get("coding", [])
        label = site.get("text") or (codings[0].get("display") if codings else None)
        if not label:
            continue
        entry = merged.setdefault(label, {"text": label, "snomed": [], "topography": None})
        for coding in codings:
            if coding.get("system") == SNOMED and coding.get("code") not in {c["code"] for c in entry["snomed"]}:
                entry["snomed"].append({"code": coding.get("code"), "display": coding.get("display")})
        entry["topography"] = entry["topography"] or _coding(codings, ICDO3)
    return list(merged.values())


def record(resource: dict, patient: str) -> dict:
    code = resource.get("code", {})
    category, source = categorise(code)
    first = (code.get("coding") or [{}])[0]
    intent = _ext(resource, INTENT_URL)
    sessions = _ext(resource, SESSIONS_URL)
    body = resource.get("bodySite", [])
    when = timing(resource)
    merged = sites(body)
    return {
        "formatVersion": FORMAT_VERSION,
        "patient": patient,
        "procedure": f"Procedure/{resource['id']}",
        "identifier": (resource.get("identifier") or [{}])[0].get("value"),
        "category": category,
        "category_source": source,
        "code": {"coding": code.get("coding", []), "text": code.get("text")},
        "intent": (intent[0]["valueCodeableConcept"].get("text") if intent else None),
        "bodySite": [s["text"] for s in merged],
        "sites": merged,
        "segments": _segments(body),
        "time": {k: v for k, v in when.items() if k != "sort"},
        "status": resource.get("status"),
        "statusReason": (resource.get("statusReason") or {}).get("text"),
        "complications": [c.get("text") or (c.get("coding") or [{}])[0].get("display") for c in resource.get("complication", [])],
        "sessions": sessions[0]["valueInteger"] if sessions else None,
        "_sort": when["sort"],
        "_first_coding": first,
    }


def _depths(resources: list[dict]) -> dict[str, int]:
    """How many 'after' hops each resource's time is from a fixed point: orders ties of imprecise times."""
    targets = {}
    for r in resources:
        rel = _ext(r, RELATIVE_URL)
        if rel:
            parts = {p["url"]: _value(p) for p in rel[0]["extension"]}
            targets[f"{r['resourceType']}/{r['id']}"] = (parts.get("target", {}).get("reference"), parts.get("relationship", ""))
    depths: dict[str, int] = {}

    def depth(ref: str, seen: frozenset = frozenset()) -> int:
        if ref in depths:
            return depths[ref]
        target, relationship = targets.get(ref, (None, ""))
        if target is None or target in seen:
            value = 0
        else:
            value = depth(target, seen | {ref}) + (-1 if relationship.startswith("before") else 1)
        depths[ref] = value
        return value

    for ref in targets:
        depth(ref)
    return depths


def procedure_history(resources: list[dict], patient: str) -> list[dict]:
    """The patient's procedures in time order (ties of imprecise times ordered by their relations)."""
    depths = _depths(resources)
    records = [record(r, patient) for r in resources if r.get("resourceType") == "Procedure"]
    records.sort(key=lambda r: (r["_sort"][0], r["_sort"][1], depths.get(r["procedure"], 0), r["procedure"]))
    return records


def public(record_: dict) -> dict:
    return {k: v for k, v in record_.items() if not k.startswith("_")}


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV Injection"); such a cell is
# written with a leading apostrophe, which spreadsheets show as text. Plain numbers ("-3") stay as they are.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def _cell(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        value = "'" + value
    # The writer quotes a field holding its line terminator ("\n") but not a bare CR, which a reader takes for a
    # line end: the text after it would start a row of its own, formula included.
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _first(items: list):
    return items[0] if items else None


def _time_columns(when: dict) -> dict:
    start, end, relative = when["start"] or {}, when["end"] or {}, when["relative"] or {}
    ages = [p["age"] for p in (start, end) if p.get("age")]
    offset = relative.get("offset") or {}
    rng = offset.get("range") or {}
    return {
        "frame": when["frame"], "precision": when["precision"], "approximate": when["approximate"],
        "start_date": start.get("date"), "start_age_low": (start.get("age") or {}).get("low"),
        "start_age_high": (start.get("age") or {}).get("high"), "end_date": end.get("date"),
        "end_age_low": (end.get("age") or {}).get("low"), "end_age_high": (end.get("age") or {}).get("high"),
        "age_unit": ages[0]["unit"] if ages else None,
        "duration_value": (when["duration"] or {}).get("value"), "duration_unit": (when["duration"] or {}).get("unit"),
        "relative_relationship": relative.get("relationship"), "relative_target": relative.get("target"),
        "offset_value": offset.get("value"),
        "offset_unit": offset.get("unit") or (rng.get("low") or rng.get("high") or {}).get("unit"),
        "offset_low": (rng.get("low") or {}).get("value"), "offset_high": (rng.get("high") or {}).get("value"),
        "time_text": when["text"],
    }


def csv_row(r: dict) -> dict:
    """The flat row of one record: every column a single value."""
    first, site = r["_first_coding"], _first(r["sites"]) or {}
    return {
        "patient": r["patient"], "procedure": r["procedure"], "identifier": r["identifier"], "category": r["category"],
        "category_source": r["category_source"], "code_system": first.get("system"), "code": first.get("code"),
        "code_display": first.get("display"), "text": r["code"]["text"], "intent": r["intent"],
        "site_count": len(r["sites"]), "body_site": site.get("text"),
        "body_site_snomed": (_first(site.get("snomed", [])) or {}).get("code"),
        "topography_icdo3": (site.get("topography") or {}).get("code"),
        "segment_count": len(r["segments"]), "segment": _first(r["segments"]),
        **_time_columns(r["time"]),
        "status": r["status"], "status_reason": r["statusReason"],
        "complication_count": len(r["complications"]), "complication": _first(r["complications"]),
        "sessions": r["sessions"],
    }


def to_csv(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({name: _cell(value) for name, value in csv_row(r).items()})
    return out.getvalue()
