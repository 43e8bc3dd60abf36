"""Encounter: a stay the case records among its procedures (the ICU admission), which is no procedure but an
encounter of its own class (mappings/encounter_concepts.csv says which concepts)."""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from mappings import fhir_time, terminology
from mappings.context import MapContext

TABLE = Path(__file__).parent / "encounter_concepts.csv"


@lru_cache(maxsize=1)
def _classes() -> dict[str, str]:
    """Procedure concept key -> Encounter.class key (hl7.csv row of v3-ActCode)."""
    with TABLE.open(newline="", encoding="utf-8") as handle:
        return {row["concept"]: row["class"] for row in csv.DictReader(handle)}


def is_encounter(fact: dict) -> bool:
    return fact.get("concept") in _classes()


def to_fhir_encounter(ctx: MapContext, fact: dict) -> dict:
    """status finished (the stay ended, or the report's story moved on), class from the table, the concept as type
    (US Core's encounter types include SNOMED procedures), the reasons; times as for any fact: event-time and
    cqf-relativeDateTime, Encounter.period only for dates (Period has no age form)."""
    start, end = ctx.timeline.fact_start(fact["id"]), ctx.timeline.end(fact["id"])
    class_coding = terminology.codings(_classes()[fact["concept"]])[0]
    resource: dict = {
        "resourceType": "Encounter",
        "identifier": [ctx.identifier(fact["id"])],
        "extension": ctx.time_extensions(start, end, None if fact.get("end") else fact.get("duration")),
        "status": "finished" if fact.get("status", "completed") == "completed" else "unknown",
        "class": class_coding,
        "type": [terminology.concept(fact.get("concept"), fact.get("text"))],
        "subject": ctx.patient_ref,
    }
    period = fhir_time.standard_time("period", start, end, allow_age=False)
    if "periodPeriod" in period:
        resource["period"] = period["periodPeriod"]
    elif "periodDateTime" in period:
        resource["period"] = {"start": period["periodDateTime"]}
    reasons = list(dict.fromkeys(fact.get("reason", [])))
    if reasons:
        resource["reasonReference"] = [ctx.ref(r) for r in reasons]
    return resource
