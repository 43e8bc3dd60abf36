"""Patient: sex and death; ages live on the events, a birth date only when the case gives one."""
from __future__ import annotations

from mappings import fhir_time
from mappings.context import MapContext


def to_fhir_patient(ctx: MapContext) -> dict:
    patient = ctx.case["patient"]
    resource: dict = {
        "resourceType": "Patient",
        "identifier": [ctx.identifier("patient")],
        "gender": patient["sex"],
    }
    if patient.get("birthDate"):
        resource["birthDate"] = patient["birthDate"]
    death = ctx.timeline.start("death")
    if death is not None:
        value = fhir_time.date_text(death) if death.exact or death.frame == "date" else None
        if value:
            resource["deceasedDateTime"] = value
            resource["_deceasedDateTime"] = {"extension": ctx.time_extensions(death)}
        else:
            resource["deceasedBoolean"] = True
            resource["_deceasedBoolean"] = {"extension": ctx.time_extensions(death)}
    return resource
