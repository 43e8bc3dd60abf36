"""Each line as an EpisodeOfCare (Onconova's TherapyLine pattern), with our documented extensions."""
from __future__ import annotations

from mappings.context import LOCAL_EXT
from mappings.errors import FhirValidationError
from mappings.fhir_validation import resource_issues
from mappings.fhir_vocabulary import EVENT_TIME_URL, UCUM
from mappings.references import CANONICAL_BASE, resource_id

NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
LINE_TYPE = {"coding": [{"system": NCIT, "code": "C133518", "display": "Line of Therapy"}], "text": "Line of Therapy"}
LINE_SYSTEM = f"{CANONICAL_BASE}/NamingSystem/treatment-line"
URL = {name: f"{LOCAL_EXT}/{name}" for name in (
    "line-number", "line-modality", "line-end-reason", "line-rule-pack", "line-rule", "line-treatment", "line-outcome")}


def _identifier(patient_reference: str, number: int) -> dict:
    return {"system": LINE_SYSTEM, "value": f"{patient_reference}/line-{number}"}


def _period(line: dict) -> dict:
    """Only calendar dates known to the day go in period; everything else stays in event-time."""
    period = {}
    for edge in ("start", "end"):
        time = line.get(edge)
        if time and time["frame"] == "date" and time["precision"] == "day":
            period[edge] = time["low"]
    return period


def _event_time(line: dict) -> dict | None:
    start = line.get("start")
    if not start:
        return None
    parts = [{"url": "frame", "valueCode": start["frame"]}]
    for edge in ("start", "end"):
        time = line.get(edge)
        if not time or time["frame"] != start["frame"]:
            continue
        if time["frame"] == "date" and time["precision"] == "day":
            parts.append({"url": edge, "valueDateTime": time["low"]})
        elif time["frame"] == "age":
            rng = {b: {"value": time[k], "unit": "years", "system": UCUM, "code": "a"}
                   for b, k in (("low", "low"), ("high", "high")) if time[k] is not None}
            if rng:
                parts.append({"url": edge, "valueRange": rng})
        parts.append({"url": f"{edge}Precision", "valueCode": time["precision"]})
    return {"url": EVENT_TIME_URL, "extension": parts}


def _outcome(outcomes: dict) -> dict | None:
    parts = []
    best = outcomes.get("bestRadiologicalResponse")
    if best:
        parts.append({"url": "radiologicalResponse", "valueCode": best["category"]})
    control = outcomes.get("syndromeControl")
    if control and control.get("value"):
        parts.append({"url": "syndromeControl", "valueCode": control["value"]})
        if control.get("duration"):
            d = control["duration"]
            parts.append({"url": "syndromeControlDuration",
                          "valueDuration": {"value": d["value"], "system": UCUM, "code": d["unit"]}})
    biomarker = outcomes.get("biomarkerResponse")
    if biomarker and biomarker.get("value"):
        parts.append({"url": "biomarkerResponse", "valueCode": biomarker["value"]})
    parts += [{"url": "complication", "valueReference": {"reference": c["reference"]}} for c in outcomes.get("complications", [])]
    return {"url": URL["line-outcome"], "extension": parts} if parts else None


def _extensions(line: dict, version: str) -> list[dict]:
    ext = [{"url": URL["line-number"], "valueInteger": line["number"]},
           {"url": URL["line-modality"], "valueCode": line["modality"]}]
    if line.get("endReason"):
        ext.append({"url": URL["line-end-reason"], "valueCode": line["endReason"]["code"]})
    ext.append({"url": URL["line-rule-pack"], "valueString": version})
    for rule in line["rulesFired"]:
        ext.append({"url": URL["line-rule"], "extension": [{"url": "id", "valueCode": rule["id"]},
                                                          {"url": "explanation", "valueString": rule["explanation"]}]})
    for component in line["components"]:
        ext.append({"url": URL["line-treatment"], "extension": [
            {"url": "treatment", "valueReference": {"reference": component["reference"]}
             | ({"display": component["text"]} if component["text"] else {})},
            {"url": "role", "valueCode": component["role"]}]})
    outcome = _outcome(line["outcomes"])
    if outcome:
        ext.append(outcome)
    timing = _event_time(line)
    if timing:
        ext.append(timing)
    return ext


def line_to_fhir(line: dict, version: str, patient_reference: str) -> dict:
    identifier = _identifier(patient_reference, line["number"])
    resource = {
        "resourceType": "EpisodeOfCare",
        "id": resource_id(identifier),
        "extension": _extensions(line, version),
        "identifier": [identifier],
        "status": "active" if line.get("ongoing") else "finished",
        "type": [LINE_TYPE],
        "patient": {"reference": patient_reference},
    }
    period = _period(line)
    if period:
        resource["period"] = period
    return resource


def lines_to_fhir(summary: dict, patient_reference: str) -> list[dict]:
    """One validated EpisodeOfCare per line; ids and identifiers derive from patient and line number."""
    resources = [line_to_fhir(line, summary["rulePackVersion"], patient_reference) for line in summary["lines"]]
    issues = [i for n, r in enumerate(resources) for i in resource_issues(r, f"$[{n}]")]
    if issues:
        raise FhirValidationError(issues)
    return resources
