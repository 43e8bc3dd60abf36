"""Small readers over FHIR JSON for tests: find resources by fact id, read codings and extensions."""
from __future__ import annotations

EVENT_TIME = "https://oncology-gateway.example.org/fhir/StructureDefinition/event-time"
RELATIVE = "http://hl7.org/fhir/StructureDefinition/cqf-relativeDateTime"


def by_fact(bundle: dict) -> dict[str, dict]:
    """fact id (with part) -> resource, from the deterministic identifiers."""
    result = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for ident in resource.get("identifier", []):
            result[ident["value"].split("/", 1)[1]] = resource
    return result


def codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"].rsplit("/", 1)[-1], c["code"]) for c in concept.get("coding", [])}


def extension(resource: dict, url: str) -> list[dict]:
    return [e for e in resource.get("extension", []) if e["url"] == url]


def event_time(resource: dict) -> dict:
    """The event-time extension's parts as {name: value}."""
    (ext,) = extension(resource, EVENT_TIME)
    parts = {}
    for part in ext["extension"]:
        value_key = next(k for k in part if k.startswith("value"))
        parts[part["url"]] = part[value_key]
    return parts


def relative(resource: dict) -> dict:
    (ext,) = extension(resource, RELATIVE)
    return {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]}
