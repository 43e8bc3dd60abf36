"""MedicationStatement (base R4: mCODE STU4 moved to MedicationRequest/Administration): one per agent and dose step."""
from __future__ import annotations

from mappings import fhir_time, terminology
from mappings.context import LOCAL_EXT, MapContext
from mappings.fhir_vocabulary import INTENT_URL
from mappings.references import full_url
from mappings.timeline import Point

COMBINED_URL = f"{LOCAL_EXT}/combined-with"
DAILY_DOSE_URL = f"{LOCAL_EXT}/daily-dose"
FORMULATION_TEXT = {"long-acting": "long-acting", "immediate-release": "immediate-release"}


def quantity(q: dict) -> dict:
    """A Quantity keeping the unit as reported, with the UCUM code when the unit table knows it."""
    result = {"value": q["value"], "unit": q["unit"]}
    if q.get("comparator"):
        result["comparator"] = q["comparator"]
    # unitCoded false: the unit is an assay's own (e.g. chromogranin A 'U/l', not the enzyme unit U), kept as text.
    code = terminology.ucum(q["unit"]) if q.get("unitCoded", True) else None
    if code:
        result.update({"system": fhir_time.UCUM, "code": code["code"]})
    return result


def dosage(step: dict) -> dict:
    result: dict = {}
    if step.get("text"):
        result["text"] = step["text"]
    frequency = step.get("frequency", {})
    if frequency.get("every"):
        every = frequency["every"]
        result["timing"] = {"repeat": {"frequency": frequency.get("count", 1), "period": every["value"], "periodUnit": every["unit"]}}
    if step.get("route"):
        result["route"] = terminology.concept(step["route"].get("concept"), step["route"].get("text"))
    if step.get("dose"):
        result["doseAndRate"] = [{"doseQuantity": quantity(step["dose"])}]
    if step.get("dailyDose"):
        result["extension"] = [{"url": DAILY_DOSE_URL, "valueQuantity": quantity(step["dailyDose"])}]
    return result


def _steps(ctx: MapContext, fact: dict) -> list[tuple[int | None, dict | None, Point, Point | None]]:
    """(index, dosage, start, end) per dose step: a step ends where the next one starts, the last where the fact ends."""
    start, end = ctx.timeline.fact_start(fact["id"]), ctx.timeline.end(fact["id"])
    dosages = fact.get("dosages", [])
    if len(dosages) <= 1:
        return [(None, dosages[0] if dosages else None, start, end)]
    starts = [ctx.timeline.at(f"{fact['id']}.dosages[{i}]") or start if i else start for i in range(len(dosages))]
    return [(i, d, starts[i], starts[i + 1] if i + 1 < len(dosages) else end) for i, d in enumerate(dosages)]


def medication_parts(fact: dict) -> list[tuple[str, dict]]:
    """Part names of the resources one medication fact becomes: agent (by key or index) x dose step."""
    parts = []
    steps = max(1, len(fact.get("dosages", [])))
    for a, agent in enumerate(fact["agents"]):
        agent_part = agent.get("concept") or f"agent-{a + 1}"
        for s in range(steps):
            parts.append((agent_part if steps == 1 else f"{agent_part}/dose-{s + 1}", agent))
    return parts


def _regimen_partners(ctx: MapContext, fact: dict, part: str) -> list[str]:
    """The other agents of the same regimen (their first dose step): given together, so linked explicitly."""
    own_agent = part.split("/")[0]
    firsts: dict[str, str] = {}
    for other_part, _ in medication_parts(fact):
        firsts.setdefault(other_part.split("/")[0], other_part)
    return [full_url(ctx.identifier(fact["id"], p)) for agent, p in firsts.items() if agent != own_agent]


def to_fhir_medication_statements(ctx: MapContext, fact: dict) -> list[dict]:
    resources = []
    parts = iter(medication_parts(fact))
    for agent in fact["agents"]:
        for index, step, start, end in _steps(ctx, fact):
            part, _ = next(parts)
            resources.append(_statement(ctx, fact, agent, part, index, step, start, end))
    return resources


def _statement(ctx: MapContext, fact: dict, agent: dict, part: str, index: int | None, step: dict | None,
               start: Point, end: Point | None) -> dict:
    medication = terminology.concept(agent.get("concept"), agent.get("text"))
    if fact.get("formulation"):
        medication["text"] = f"{medication.get('text', '')}, {FORMULATION_TEXT[fact['formulation']]}".strip(", ")
    resource: dict = {
        "resourceType": "MedicationStatement",
        "identifier": [ctx.identifier(fact["id"], part)],
        "status": fact.get("status", "completed"),
        "medicationCodeableConcept": medication,
        "subject": ctx.patient_ref,
    }
    extensions: list[dict] = []
    if fact.get("intent"):
        extensions.append({"url": INTENT_URL, "valueCodeableConcept": terminology.concept(f"intent-{fact['intent']}")})
    for other in fact.get("combinedWith", []):
        extensions.append({"url": COMBINED_URL, "valueReference": ctx.ref(other)})
    for partner in _regimen_partners(ctx, fact, part):
        extensions.append({"url": COMBINED_URL, "valueReference": {"reference": partner}})
    whole_fact = index is None and not fact.get("end")
    extensions += ctx.time_extensions(start, end, fact.get("duration") if whole_fact else None)
    resource["extension"] = extensions
    last_step = index is None or index == len(fact.get("dosages", [])) - 1
    if fact.get("statusReason") and last_step:
        reason = fact["statusReason"]
        resource["statusReason"] = [terminology.concept(reason.get("concept"), reason.get("text"))]
    if index is not None and not last_step:
        resource["status"] = "completed"
    resource.update(fhir_time.standard_time("effective", start, end, allow_age=False))
    if fact.get("reason"):
        resource["reasonReference"] = [ctx.ref(r) for r in fact["reason"]]
    notes = []
    if fact.get("courses"):
        notes.append(f"{fact['courses']} courses")
    if fact.get("note"):
        notes.append(fact["note"])
    if index is not None and index > 0:
        notes.append(f"Dose step {index + 1} of {len(fact['dosages'])}")
    if notes:
        resource["note"] = [{"text": n} for n in notes]
    if step:
        resource["dosage"] = [dosage(step)]
    return resource
