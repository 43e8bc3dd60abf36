"""Observation: laboratory and tumour markers (mCODE TumorMarkerTest where it conforms), immunohistochemistry,
facts that were not available (dataAbsentReason), and treatment outcomes (mCODE CancerDiseaseStatus)."""
from __future__ import annotations

from mappings import fhir_time, terminology
from mappings.context import LOCAL_EXT, MCODE, MapContext
from mappings.fhir_vocabulary import TUMOR_MARKER_PROFILE
from mappings.to_medication import quantity

DISEASE_STATUS_PROFILE = f"{MCODE}/mcode-cancer-disease-status"
EVIDENCE_TYPE_URL = f"{MCODE}/mcode-cancer-disease-status-evidence-type"
TREATMENT_URL = f"{LOCAL_EXT}/treatment"
LOINC = "http://loinc.org"
# Outcome value -> (mCODE condition-status-trend key, NCIt response key or None), from
# terminology/case_disease_status.csv, whose source column says why some values (progression) have no NCIt coding.
DISEASE_STATUS_VALUES = {value: (row["trend_key"], row["response_key"] or None)
                         for value, row in terminology.case_values("disease_status").items()}
EVIDENCE_KEYS = {"imaging": "evidence-imaging", "biomarker": "evidence-tumour-marker"}


def _base(ctx: MapContext, fact: dict, code: dict, category: str | None) -> dict:
    resource: dict = {
        "resourceType": "Observation",
        "identifier": [ctx.identifier(fact["id"])],
        "status": "final",
    }
    if category:
        resource["category"] = [terminology.concept(f"category-{category}")]
    resource["code"] = code
    resource["subject"] = ctx.patient_ref
    start = ctx.timeline.fact_start(fact["id"])
    end = ctx.timeline.end(fact["id"])
    resource["extension"] = ctx.time_extensions(start, end, fact.get("duration"))
    resource.update(fhir_time.standard_time("effective", start, None, allow_age=False))
    return resource


def to_fhir_observation(ctx: MapContext, fact: dict) -> dict:
    code = terminology.concept(fact.get("concept"), fact.get("text"))
    # A TNM category is no laboratory result; without a verified staging category code it gets none.
    resource = _base(ctx, fact, code, None if fact["kind"] == "staging" else "laboratory")
    if "value" in fact:
        resource["valueQuantity"] = quantity(fact["value"])
    elif "valueConcept" in fact:
        resource["valueCodeableConcept"] = terminology.concept(fact["valueConcept"])
    elif "result" in fact:
        key = {"positive": "result-positive", "negative": "result-negative"}.get(fact["result"])
        resource["valueCodeableConcept"] = terminology.concept(key, fact["result"].capitalize())
        if fact["result"] == "normal":
            resource["interpretation"] = [terminology.concept("interpretation-normal")]
    else:
        absent = fact["absent"]
        resource["dataAbsentReason"] = terminology.concept(f"absent-{absent['reason']}", absent.get("text"))
    if fact.get("interpretation"):
        resource["interpretation"] = [terminology.concept(f"interpretation-{fact['interpretation']}")]
    if fact.get("focus"):
        resource["focus"] = [ctx.ref(fact["focus"])]
    if fact.get("specimenFrom"):
        source = next(p for p in ctx.case.get("procedures", []) if p["id"] == fact["specimenFrom"])
        resource["specimen"] = {"display": f"Surgical specimen: {source.get('text') or source.get('concept')}"}
    if fact.get("note"):
        resource["note"] = [{"text": fact["note"]}]
    conforms = (fact["kind"] == "tumour-marker" and any(c["system"] == LOINC for c in code.get("coding", []))
                and ("valueQuantity" in resource or "valueCodeableConcept" in resource))
    if conforms:
        resource["meta"] = {"profile": [TUMOR_MARKER_PROFILE]}
    return resource


def to_fhir_outcome(ctx: MapContext, fact: dict) -> dict:
    if fact["kind"] in ("radiological-response", "disease-status"):
        resource = _disease_status(ctx, fact)
    else:
        resource = _local_outcome(ctx, fact)
    for treatment in fact.get("treatments", []):
        resource["extension"].append({"url": TREATMENT_URL, "valueReference": ctx.ref(treatment)})
    if fact.get("focus"):
        resource["focus"] = [ctx.ref(fact["focus"])]
    if fact.get("evidence"):
        resource["derivedFrom"] = [ctx.ref(e) for e in fact["evidence"]]
    notes = [n for n in (fact.get("text"), "Transient." if fact.get("transient") else None) if n]
    if notes:
        resource["note"] = [{"text": n} for n in notes]
    return resource


def _disease_status(ctx: MapContext, fact: dict) -> dict:
    resource = _base(ctx, fact, terminology.concept("cancer-disease-status"), None)
    trend, response = DISEASE_STATUS_VALUES[fact["value"]]
    value = terminology.concept(trend)
    value["coding"] += terminology.codings(response)
    value["text"] = fact.get("text") or value["text"]
    resource["valueCodeableConcept"] = value
    if fact.get("method") in EVIDENCE_KEYS:
        resource["extension"].append({"url": EVIDENCE_TYPE_URL,
                                      "valueCodeableConcept": terminology.concept(EVIDENCE_KEYS[fact["method"]])})
    # mCODE forbids components on CancerDiseaseStatus: a duration stays in event-time (start and end).
    resource["meta"] = {"profile": [DISEASE_STATUS_PROFILE]}
    return resource


def _local_outcome(ctx: MapContext, fact: dict) -> dict:
    kind = "outcome-symptom-control" if fact["kind"] == "symptom-control" else "outcome-biomarker-response"
    category = "exam" if fact["kind"] == "symptom-control" else "laboratory"
    resource = _base(ctx, fact, terminology.concept(kind), category)
    resource["valueCodeableConcept"] = terminology.concept(f"value-{fact['value']}")
    components = []
    if fact.get("duration"):
        d = fact["duration"]
        components.append({"code": terminology.concept("outcome-control-duration"),
                           "valueQuantity": fhir_time.duration(d["value"], d["unit"])})
    if components:
        resource["component"] = components
    return resource
