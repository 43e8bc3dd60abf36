"""Patient: sex and death; ages live on the events, a birth date only when the case gives one."""
from __future__ import annotations

from mappings import fhir_time, terminology
from mappings.context import LOCAL_EXT, MCODE, MapContext
from mappings.fhir_vocabulary import DATA_ABSENT_URL

CANCER_PATIENT_PROFILE = f"{MCODE}/mcode-cancer-patient"
DEATH_URL = f"{LOCAL_EXT}/death-circumstances"


def to_fhir_patient(ctx: MapContext) -> dict:
    patient = ctx.case["patient"]
    resource: dict = {
        "resourceType": "Patient",
        "identifier": [ctx.identifier("patient")],
        "gender": patient["sex"],
    }
    # mCODE's CancerPatient is US Core Patient: name 1..*, and us-core-6 accepts a data-absent-reason extension
    # in place of family/given. A published case is de-identified, so the name is 'masked', never invented.
    resource["name"] = [{"extension": [{"url": DATA_ABSENT_URL, "valueCode": "masked"}]}]
    resource["meta"] = {"profile": [CANCER_PATIENT_PROFILE]}
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
        resource["extension"] = [_death_circumstances(patient["death"])]
    return resource


def _death_circumstances(death: dict) -> dict:
    """What the report says of the death besides its time: R4 Patient has no element for the disease status at
    death or the cause, so they travel in one documented extension; a cause not reported is said as unknown."""
    parts = []
    if death.get("text"):
        parts.append({"url": "text", "valueString": death["text"]})
    if death.get("diseaseStatusAtDeath"):
        parts.append({"url": "diseaseStatus", "valueString": death["diseaseStatusAtDeath"]})
    cause = death.get("cause")
    if cause:
        parts.append({"url": "cause", "valueCodeableConcept": terminology.concept(cause.get("concept"), cause.get("text"))})
    else:
        parts.append({"url": "cause", "valueCodeableConcept": {
            "extension": [{"url": DATA_ABSENT_URL, "valueCode": "unknown"}], "text": "Cause of death not reported"}})
    return {"url": DEATH_URL, "extension": parts}
