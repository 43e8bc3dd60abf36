"""FHIR search over the store for the clinical types: subject/patient, code, date, _lastUpdated, identifier."""
from __future__ import annotations

import re

import redis

from mappings.errors import CaseError, Issue
from mappings.references import parse_reference
from store import reads

SEARCHABLE = ("Condition", "Procedure", "MedicationStatement", "Observation", "MedicationRequest", "MedicationAdministration")
# The element a 'date' search looks at, per type (FHIR R4 search parameter definitions).
DATE_ELEMENTS = {"Condition": "onset", "Procedure": "performed", "MedicationStatement": "effective",
                 "Observation": "effective", "MedicationRequest": "authoredOn", "MedicationAdministration": "effective"}
CODE_ELEMENTS = {"MedicationStatement": "medicationCodeableConcept", "MedicationRequest": "medicationCodeableConcept",
                 "MedicationAdministration": "medicationCodeableConcept"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")
CONTROL = {"_count", "_offset", "_format", "_sort"}
SUPPORTED = {"subject", "patient", "code", "date", "_lastUpdated", "identifier", "_id"}


def parse_prefixed(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and value[2:3].isdigit():
        return value[:2], value[2:]
    return "eq", value


def _bounds(value: str) -> tuple[int, int]:
    """Start and end (ms) of the period a date value at its precision covers."""
    start = reads.instant_ms(value)
    precision_end = {4: "-12-31T23:59:59.999", 7: None, 10: "T23:59:59.999"}
    if len(value) == 7:
        year, month = int(value[:4]), int(value[5:7])
        nxt = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
        return start, reads.instant_ms(nxt) - 1
    suffix = precision_end.get(len(value))
    return start, reads.instant_ms(value + suffix) if suffix else start


def _matches_date(period: tuple[int, int] | None, prefix: str, value: str) -> bool:
    if period is None:
        return False
    lo, hi = _bounds(value)
    start, end = period
    return {"eq": start >= lo and end <= hi, "ne": not (start >= lo and end <= hi), "gt": end > hi, "lt": start < lo,
            "ge": end >= lo, "le": start <= hi}[prefix]


def resource_period(resource: dict, element: str) -> tuple[int, int] | None:
    """The time span of the element as ms, from dateTime, Period or instant; None when unknown (ages, extensions)."""
    for suffix in ("DateTime", "", "Instant"):
        value = resource.get(element + suffix)
        if isinstance(value, str) and re.match(r"^\d{4}", value):
            return _bounds(value[:10]) if len(value) <= 10 else (reads.instant_ms(value), reads.instant_ms(value))
    period = resource.get(element + "Period")
    if isinstance(period, dict) and (period.get("start") or period.get("end")):
        start = _bounds(period["start"])[0] if period.get("start") else -(2**62)
        end = _bounds(period["end"][:10])[1] if period.get("end") else 2**62
        return start, end
    return None


def _codes(concept: dict | None) -> set[tuple[str, str]]:
    return {(c.get("system", ""), c.get("code", "")) for c in (concept or {}).get("coding", [])}


def _matches_code(resource: dict, rtype: str, value: str) -> bool:
    codes = _codes(resource.get(CODE_ELEMENTS.get(rtype, "code")))
    for alternative in value.split(","):
        system, _, code = alternative.rpartition("|") if "|" in alternative else ("", "", alternative)
        if any(c == code and (not system or s == system) for s, c in codes):
            return True
    return False


def _matches_identifier(resource: dict, value: str) -> bool:
    system, _, code = value.rpartition("|") if "|" in value else ("", "", value)
    return any(i.get("value") == code and (not system or i.get("system") == system) for i in resource.get("identifier", []))


def _patient_param(params: dict[str, list[str]]) -> str | None:
    for name in ("subject", "patient"):
        for value in params.get(name, []):
            rtype, rid = parse_reference(value)
            return rid if rtype in (None, "Patient") else None
    return None


def check_params(rtype: str, params: dict[str, list[str]]) -> None:
    """Unknown parameters and unreadable dates are errors, not silently ignored filters."""
    issues = [Issue(f"{rtype}?{name}", f"search parameter '{name}' is not supported for {rtype} "
                    f"(supported: {', '.join(sorted(SUPPORTED))})", "not-supported")
              for name in params if name.split(":")[0] not in SUPPORTED | CONTROL]
    for name in ("date", "_lastUpdated"):
        for value in params.get(name, []):
            try:
                _bounds(parse_prefixed(value)[1])
            except ValueError:
                issues.append(Issue(f"{rtype}?{name}", f"{value!r} is not a FHIR date, dateTime or instant", "value"))
    if issues:
        raise CaseError(issues)


def search(client: redis.Redis, rtype: str, params: dict[str, list[str]]) -> list[dict]:
    """Every match, in lastUpdated order; the caller pages."""
    check_params(rtype, params)
    since = None
    for value in params.get("_lastUpdated", []):
        prefix, date = parse_prefixed(value)
        if prefix in ("gt", "ge"):
            since = reads.instant_ms(date) if since is None else max(since, reads.instant_ms(date))
    pid = _patient_param(params)
    if pid is not None:
        resources = [r for r in reads.compartment(client, pid, since) if r["resourceType"] == rtype]
    else:
        resources = reads.load_many(client, [(rtype, i) for i in reads.type_ids(client, rtype, since)])
    return [r for r in resources if _matches(r, rtype, params, pid)]


def _matches(resource: dict, rtype: str, params: dict[str, list[str]], pid: str | None) -> bool:
    if any(name in params for name in ("subject", "patient")) and pid is None:
        return False
    for value in params.get("_id", []):
        if resource["id"] not in value.split(","):
            return False
    for value in params.get("code", []):
        if not _matches_code(resource, rtype, value):
            return False
    for value in params.get("identifier", []):
        if not _matches_identifier(resource, value):
            return False
    for value in params.get("date", []):
        prefix, date = parse_prefixed(value)
        if not _matches_date(resource_period(resource, DATE_ELEMENTS[rtype]), prefix, date):
            return False
    for value in params.get("_lastUpdated", []):
        prefix, date = parse_prefixed(value)
        stamp = reads.instant_ms(resource["meta"]["lastUpdated"])
        if not _matches_date((stamp, stamp), prefix, date):
            return False
    return True
