"""A patient's procedures as a registry reads them: normalised category, original coding, intent, site,
time with its precision, status and reason, complications, and the Procedure it came from."""
from __future__ import annotations

import csv
import io
import re
from functools import lru_cache
from pathlib import Path

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
EVENT_TIME_URL = "https://oncology-gateway.example.org/fhir/StructureDefinition/event-time"
RELATIVE_URL = "http://hl7.org/fhir/StructureDefinition/cqf-relativeDateTime"
INTENT_URL = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-procedure-intent"
SESSIONS_URL = "https://oncology-gateway.example.org/fhir/StructureDefinition/session-count"
CATEGORIES = ("resection", "ablation", "embolization", "chemoembolization", "radioembolization",
              "radionuclide-therapy", "biopsy", "other")
SEGMENT = re.compile(r"segments?\s+((?:[IV]+[ab]?(?:,\s*|\s+and\s+)?)+)", re.IGNORECASE)
CSV_FIELDS = ("patient", "procedure", "identifier", "category", "category_source", "code_system", "code", "code_display",
              "text", "intent", "body_site", "segments", "frame", "start", "end", "precision", "relative_to",
              "status", "status_reason", "complications", "sessions")


@lru_cache(maxsize=1)
def _code_categories() -> dict[tuple[str, str], str]:
    with (MAPPINGS / "procedure_categories.csv").open(newline="", encoding="utf-8") as handle:
        return {(r["system"], r["code"]): r["category"] for r in csv.DictReader(handle)}


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


def _age_text(value: dict) -> str:
    if "low" in value or "high" in value:
        low, high = value.get("low", {}).get("value"), value.get("high", {}).get("value")
        return f"{low if low is not None else ''}..{high if high is not None else ''} a"
    return f"{value['value']} a"


def timing(resource: dict) -> dict:
    """frame, start, end, precision and the relative expression, from event-time or performed[x]."""
    result = {"frame": None, "start": None, "end": None, "precision": "unknown", "relative_to": None, "sort": (2, 0.0)}
    relative = _ext(resource, RELATIVE_URL)
    if relative:
        parts = {p["url"]: _value(p) for p in relative[0]["extension"]}
        offset = parts.get("offset", {})
        amount = f"{offset['value']} {offset.get('unit', '')}" if "value" in offset else "some time"
        result["relative_to"] = f"{parts.get('relationship')} {parts.get('target', {}).get('reference')} ({amount})"
    events = _ext(resource, EVENT_TIME_URL)
    if events:
        parts = {p["url"]: _value(p) for p in events[0]["extension"]}
        result["frame"] = parts.get("frame")
        result["precision"] = parts.get("startPrecision", "unknown")
        for edge in ("start", "end"):
            value = parts.get(edge)
            result[edge] = _age_text(value) if isinstance(value, dict) else value
        start = parts.get("start")
        if isinstance(start, dict):
            result["sort"] = (1, (start.get("value") or start.get("low", {}).get("value") or start.get("high", {}).get("value") or 0.0))
        elif isinstance(start, str):
            result["sort"] = (0, start)
        if result["relative_to"] and result["precision"] == "unknown":
            result["precision"] = "relative"
        return result
    if resource.get("performedDateTime"):
        value = resource["performedDateTime"]
        result.update(frame="date", start=value, precision={4: "year", 7: "month"}.get(len(value), "day"), sort=(0, value))
    elif resource.get("performedPeriod"):
        period = resource["performedPeriod"]
        start = period.get("start")
        result.update(frame="date", start=start, end=period.get("end"),
                      precision={4: "year", 7: "month"}.get(len(start or ""), "day"), sort=(0, start or ""))
    elif resource.get("performedAge") or resource.get("performedRange"):
        value = resource.get("performedAge") or resource.get("performedRange")
        result.update(frame="age", start=_age_text(value), precision="year" if "value" in value else "unknown",
                      sort=(1, value.get("value") or value.get("low", {}).get("value") or 0.0))
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


def record(resource: dict, patient: str) -> dict:
    code = resource.get("code", {})
    category, source = categorise(code)
    first = (code.get("coding") or [{}])[0]
    intent = _ext(resource, INTENT_URL)
    sessions = _ext(resource, SESSIONS_URL)
    sites = resource.get("bodySite", [])
    when = timing(resource)
    return {
        "patient": patient,
        "procedure": f"Procedure/{resource['id']}",
        "identifier": (resource.get("identifier") or [{}])[0].get("value"),
        "category": category,
        "category_source": source,
        "code": {"coding": code.get("coding", []), "text": code.get("text")},
        "intent": (intent[0]["valueCodeableConcept"].get("text") if intent else None),
        "bodySite": [s.get("text") or (s.get("coding") or [{}])[0].get("display") for s in sites],
        "segments": _segments(sites),
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


def to_csv(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        first = r["_first_coding"]
        writer.writerow({name: _cell(value) for name, value in {
            "patient": r["patient"], "procedure": r["procedure"], "identifier": r["identifier"], "category": r["category"],
            "category_source": r["category_source"], "code_system": first.get("system"), "code": first.get("code"),
            "code_display": first.get("display"), "text": r["code"]["text"], "intent": r["intent"],
            "body_site": "; ".join(s for s in r["bodySite"] if s), "segments": " ".join(r["segments"]),
            "frame": r["time"]["frame"], "start": r["time"]["start"], "end": r["time"]["end"],
            "precision": r["time"]["precision"], "relative_to": r["time"]["relative_to"], "status": r["status"],
            "status_reason": r["statusReason"], "complications": "; ".join(c for c in r["complications"] if c),
            "sessions": r["sessions"],
        }.items()})
    return out.getvalue()
