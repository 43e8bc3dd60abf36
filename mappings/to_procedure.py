"""Procedure: surgery, liver-directed therapies, ICU admission; not-done procedures keep their reason."""
from __future__ import annotations

from mappings import fhir_time, procedure_classes, terminology
from mappings.context import LOCAL_EXT, MCODE, MapContext
from mappings.fhir_vocabulary import INTENT_URL
from mappings.to_condition import body_sites

SURGICAL_PROFILE = f"{MCODE}/mcode-cancer-related-surgical-procedure"
PARTICLES_URL = f"{LOCAL_EXT}/embolic-particles"
SESSIONS_URL = f"{LOCAL_EXT}/session-count"
COMBINED_URL = f"{LOCAL_EXT}/combined-with"


def _surgical(code: dict) -> bool:
    """Resections are the cancer-related surgical procedures we are sure of (surgical_profile in the one procedure
    table, mappings/procedure_categories.csv); embolization and SIRT stay base Procedure."""
    row = procedure_classes.classify(code.get("coding") or [])
    return bool(row and row.surgical)


def _category(code: dict) -> str | None:
    """The Procedure.category key of the one procedure table (its fhir_category column)."""
    row = procedure_classes.classify(code.get("coding") or [])
    return row.fhir_category if row else None


def _particles(items: list[dict]) -> tuple[list[dict], list[dict]]:
    used, extensions = [], []
    for item in items:
        material = terminology.concept(item["material"].get("concept"), item["material"].get("text"))
        size = ""
        parts = [{"url": "material", "valueCodeableConcept": material}]
        if "sizeMinUm" in item or "sizeMaxUm" in item:
            rng = {}
            for bound, key in (("low", "sizeMinUm"), ("high", "sizeMaxUm")):
                if key in item:
                    rng[bound] = {"value": item[key], "unit": "µm"}
            parts.append({"url": "size", "valueRange": rng})
            size = f" {item.get('sizeMinUm', '')}–{item.get('sizeMaxUm', '')} µm"
        used.append({"text": f"{material.get('text', 'Embolic particles')}{size}"})
        extensions.append({"url": PARTICLES_URL, "extension": parts})
    return used, extensions


def to_fhir_procedure(ctx: MapContext, fact: dict) -> dict:
    status = fact.get("status", "completed")
    resource: dict = {
        "resourceType": "Procedure",
        "identifier": [ctx.identifier(fact["id"])],
        "status": status,
    }
    code = terminology.concept(fact.get("concept"), fact.get("text"))
    if _category(code):
        resource["category"] = terminology.concept(_category(code))
    resource |= {"code": code, "subject": ctx.patient_ref}
    extensions: list[dict] = []
    if fact.get("intent"):
        extensions.append({"url": INTENT_URL, "valueCodeableConcept": terminology.concept(f"intent-{fact['intent']}")})
    if fact.get("sessions", {}).get("count"):
        extensions.append({"url": SESSIONS_URL, "valueInteger": fact["sessions"]["count"]})
    for other in fact.get("combinedWith", []):
        extensions.append({"url": COMBINED_URL, "valueReference": ctx.ref(other)})
    used, particle_ext = _particles(fact.get("particles", []))
    extensions += particle_ext
    start, end = ctx.timeline.fact_start(fact["id"]), ctx.timeline.end(fact["id"])
    extensions += ctx.time_extensions(start, end, None if fact.get("end") else fact.get("duration"))
    resource["extension"] = extensions
    if fact.get("statusReason"):
        reason = fact["statusReason"]
        resource["statusReason"] = terminology.concept(reason.get("concept"), reason.get("text"))
    if status != "not-done":
        # A procedure that was not done has no performed time; its planned time stays in event-time.
        resource.update(fhir_time.standard_time("performed", start, end, allow_age=True))
    reasons = list(dict.fromkeys(fact.get("target", []) + fact.get("reason", [])))
    if reasons:
        resource["reasonReference"] = [ctx.ref(r) for r in reasons]
    sites = [s for site in fact.get("site", []) for s in body_sites(site)]
    if sites:
        resource["bodySite"] = sites
    if fact.get("outcome"):
        resource["outcome"] = {"text": fact["outcome"]}
    complications = [c for c in ctx.case.get("conditions", []) if c.get("dueTo") == fact["id"]]
    if complications:
        resource["complication"] = [terminology.concept(c.get("concept"), c.get("text")) for c in complications]
        resource["complicationDetail"] = [ctx.ref(c["id"]) for c in complications]
    if used:
        resource["usedCode"] = used
    notes = [n for n in (fact.get("sessions", {}).get("text") and f"Sessions: {fact['sessions']['text']}", fact.get("note")) if n]
    if notes:
        resource["note"] = [{"text": n} for n in notes]
    # The profile is for surgery performed: a planned resection that was not done stays a base Procedure.
    if _surgical(resource["code"]) and status != "not-done":
        resource["meta"] = {"profile": [SURGICAL_PROFILE]}
    return resource
