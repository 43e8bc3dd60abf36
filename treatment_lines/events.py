"""Normalises FHIR resources into the few kinds of events the engine reasons about.

Only codings and standard links are read (our case format is never assumed); text keywords classify a
therapy only when its concept has no coding at all (see the rule pack's textFallback).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mappings.context import LOCAL_EXT
from mappings.fhir_vocabulary import DUE_TO_URL, INTENT_URL, RELATIVE_URL
from mappings.terminology import time_unit_days
from treatment_lines.resources import ResourceIndex
from treatment_lines.rules import RuleBook

COMBINED_URL = f"{LOCAL_EXT}/combined-with"
TREATMENT_URL = f"{LOCAL_EXT}/treatment"
DAILY_DOSE_URL = f"{LOCAL_EXT}/daily-dose"
MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
# Statuses meaning the therapy was not given (or not yet): they never make or extend a line.
NOT_GIVEN = {"not-done", "entered-in-error", "preparation", "not-taken", "intended", "cancelled", "draft"}
STOPPED = {"stopped", "on-hold"}
RESOLVED = {"resolved", "inactive", "remission"}
PERIOD_DAYS = time_unit_days()  # Timing.repeat.periodUnit is a UCUM code (R4 units-of-time)


@dataclass
class Therapy:
    key: str
    rtype: str
    cls: str
    classified_by: str
    status: str
    concept: dict
    agent_code: str              # what "the same therapy" means for continuation: agent or procedure code
    explicit_stop: bool
    stop_reasons: list[str]      # SNOMED statusReason codes
    combined_with: list[str]
    group: str | None            # MedicationRequest.groupIdentifier
    start_signature: str | None  # the recorded relative start, for therapies split from one statement
    reasons: list[str]
    agents: tuple[str, ...] = ()  # lexicon agents of a medication (several for 'carboplatin/paclitaxel')
    also: list[str] = field(default_factory=list)  # other records of this same treatment (LOT-DUPLICATE)
    part_of: list[str] = field(default_factory=list)
    request: str | None = None   # MedicationAdministration.request
    reason_codes: list[str] = field(default_factory=list)
    reason_texts: list[str] = field(default_factory=list)
    reason_concepts: list[dict] = field(default_factory=list)
    dose: dict | None = None
    daily_dose: tuple[float, str] | None = None
    route: str | None = None
    frequency: str | None = None
    sites: list[str] = field(default_factory=list)
    intent: str | None = None
    action_days: float | None = None  # a depot: one dose covers this many days after it is given


@dataclass
class ConditionEvent:
    key: str
    kind: str                    # tumour | syndrome | critical | complication | other
    codes: list[str]
    text: str | None
    due_to: list[str]
    resolved: bool


@dataclass
class OutcomeEvent:
    key: str
    kind: str                    # disease-status | symptom-control | biomarker-response
    value: str | None
    category: str | None         # disease status: RECIST-like category
    text: str | None
    treatments: list[str]
    duration: dict | None
    markers: list[str]


def codes_of(concept: dict | None) -> list[str]:
    return [c.get("code") for c in (concept or {}).get("coding", []) if c.get("code")]


def label(concept: dict | None) -> str | None:
    concept = concept or {}
    codings = concept.get("coding") or [{}]
    return concept.get("text") or codings[0].get("display")


def _ext_refs(resource: dict, url: str, index: ResourceIndex) -> list[str]:
    refs = [index.resolve(e.get("valueReference")) for e in resource.get("extension") or [] if e.get("url") == url]
    return sorted({r for r in refs if r})


def _medication_concept(resource: dict, index: ResourceIndex) -> dict:
    """The medication as one concept; a referenced Medication brings its code and its ingredients' codes."""
    if resource.get("medicationCodeableConcept"):
        return resource["medicationCodeableConcept"]
    ref = index.resolve(resource.get("medicationReference"))
    if not ref:
        return {"text": (resource.get("medicationReference") or {}).get("display")}
    medication = index.by_key[ref]
    concept = dict(medication.get("code") or {})
    ingredients = [i.get("itemCodeableConcept") for i in medication.get("ingredient") or [] if i.get("itemCodeableConcept")]
    if ingredients:
        # The ingredients name the agents even when the product code is unknown (a compounded or local product).
        concept["coding"] = list(concept.get("coding") or []) + [c for i in ingredients for c in i.get("coding") or []]
        texts = [concept.get("text")] + [i.get("text") for i in ingredients]
        concept["text"] = " / ".join(t for t in texts if t) or None
        if concept["text"] is None:
            concept.pop("text")
    elif not concept:
        concept = {"text": (resource.get("medicationReference") or {}).get("display")}
    return concept


def _start_signature(resource: dict) -> str | None:
    for ext in resource.get("extension") or []:
        if ext.get("url") == RELATIVE_URL:
            parts = sorted((p.get("url"), repr(sorted(p.items()))) for p in ext.get("extension", []))
            return repr(parts)
    return None


def _status_reasons(resource: dict) -> list[dict]:
    reason = resource.get("statusReason")
    if isinstance(reason, dict):
        return [reason]
    return list(reason or [])


def _dosage(resource: dict) -> dict:
    if resource["resourceType"] == "MedicationAdministration":
        dosage = resource.get("dosage") or {}
        return {"route": dosage.get("route"), "dose": dosage.get("dose"), "text": dosage.get("text")}
    dosages = resource.get("dosage") or resource.get("dosageInstruction") or [{}]
    first = dosages[0]
    dose_rate = (first.get("doseAndRate") or [{}])[0]
    daily = next((e.get("valueQuantity") for e in first.get("extension", []) if e.get("url") == DAILY_DOSE_URL), None)
    repeat = (first.get("timing") or {}).get("repeat") or {}
    return {"route": first.get("route"), "dose": dose_rate.get("doseQuantity"), "text": first.get("text"),
            "repeat": repeat, "daily": daily}


def _daily(dose: dict | None, repeat: dict, daily: dict | None) -> tuple[float, str] | None:
    """Daily amount, so that '50 mcg every 8 h' -> '100 mcg every 8 h' reads as an escalation."""
    if daily and daily.get("value") is not None:
        return float(daily["value"]), daily.get("unit", "")
    if not dose or dose.get("value") is None or not repeat.get("period"):
        return None
    period_days = repeat["period"] * PERIOD_DAYS.get(repeat.get("periodUnit", "d"), 1)
    return float(dose["value"]) * repeat.get("frequency", 1) / period_days, dose.get("unit", "")


def _frequency(repeat: dict) -> str | None:
    if not repeat.get("period"):
        return None
    count = repeat.get("frequency", 1)
    every = f"every {repeat['period']} {repeat.get('periodUnit', '')}".strip()
    return every if count == 1 else f"{count} times {every}"


def therapy(key: str, resource: dict, index: ResourceIndex, rules: RuleBook) -> Therapy | None:
    """A Procedure or medication resource as a therapy, or None when it is not one we classify."""
    rtype = resource["resourceType"]
    concept = resource.get("code", {}) if rtype == "Procedure" else _medication_concept(resource, index)
    found = rules.classify(concept, medication=rtype != "Procedure")
    if found.cls is None:
        return None
    cls, how = found.cls, found.how
    reasons = _status_reasons(resource)
    codes = codes_of(concept)
    agent_code = "+".join(found.agents) if found.agents else codes[0] if codes else (label(concept) or "").lower()
    item = Therapy(
        key=key, rtype=rtype, cls=cls, classified_by=how, status=resource.get("status", "unknown"), concept=concept,
        agent_code=agent_code, agents=found.agents, action_days=found.action_days,
        explicit_stop=resource.get("status") in STOPPED or bool(reasons),
        stop_reasons=sorted({c for r in reasons for c in codes_of(r)}),
        combined_with=_ext_refs(resource, COMBINED_URL, index),
        group=(resource.get("groupIdentifier") or {}).get("value"),
        start_signature=_start_signature(resource),
        reasons=sorted({r for r in (index.resolve(x) for x in resource.get("reasonReference") or []) if r}),
        part_of=sorted({r for r in (index.resolve(x) for x in resource.get("partOf") or []) if r}),
        request=index.resolve(resource.get("request")),
        reason_codes=sorted({c for rc in resource.get("reasonCode") or [] for c in codes_of(rc)}),
        reason_texts=[t for t in (label(rc) for rc in resource.get("reasonCode") or []) if t],
        reason_concepts=list(resource.get("reasonCode") or []),
    )
    item.reason_texts += [t for t in (label(index.by_key[r].get("code")) for r in item.reasons) if t]
    intent = next((e.get("valueCodeableConcept") for e in resource.get("extension") or [] if e.get("url") == INTENT_URL), None)
    item.intent = label(intent) if intent else None
    if rtype == "Procedure":
        item.sites = list(dict.fromkeys(t for t in (label(s) for s in resource.get("bodySite") or []) if t))
    else:
        dosage = _dosage(resource)
        item.dose = dosage.get("dose")
        item.route = label(dosage.get("route")) if dosage.get("route") else None
        item.frequency = _frequency(dosage.get("repeat") or {}) or dosage.get("text")
        item.daily_dose = _daily(item.dose, dosage.get("repeat") or {}, dosage.get("daily"))
    return item


def therapies(index: ResourceIndex, rules: RuleBook) -> tuple[list[Therapy], list[dict]]:
    """Every therapy that was given, and notes on resources skipped or classified by text."""
    found, notes = [], []
    for key, resource in index.of_type("Procedure", *MEDICATION_TYPES):
        item = therapy(key, resource, index, rules)
        if item is None:
            concept = resource.get("code") if resource["resourceType"] == "Procedure" else _medication_concept(resource, index)
            if resource["resourceType"] != "Procedure" or codes_of(concept):
                notes.append({"code": "unclassified-therapy", "references": [key],
                              "message": f"'{label(concept)}' is in neither the drug lexicon nor the rule pack; ignored"})
            continue
        if item.status in NOT_GIVEN:
            continue
        if item.classified_by == "text":
            notes.append({"code": "classified-by-text", "references": [key],
                          "message": f"'{label(item.concept)}' read as {item.cls} from its text (no known code)"})
        found.append(item)
    return found, notes


def condition(key: str, resource: dict, index: ResourceIndex, rules: RuleBook) -> ConditionEvent:
    codes = codes_of(resource.get("code"))
    text = label(resource.get("code"))
    due_to = _ext_refs(resource, DUE_TO_URL, index)
    if due_to:
        kind = "complication"
    elif rules.critical_codes & set(codes) or (not codes and any(k in (text or "").lower() for k in rules.critical_keywords)):
        kind = "critical"
    elif rules.tumour_codes & set(codes) or any(c.startswith(rules.tumour_prefixes) for c in codes if rules.tumour_prefixes):
        kind = "tumour"
    elif rules.syndrome_codes & set(codes):
        kind = "syndrome"
    else:
        kind = "other"
    status = codes_of(resource.get("clinicalStatus"))
    return ConditionEvent(key, kind, codes, text, due_to, bool(set(status) & RESOLVED))


def conditions(index: ResourceIndex, rules: RuleBook) -> list[ConditionEvent]:
    found = [condition(k, r, index, rules) for k, r in index.of_type("Condition")]
    by_key = {event.key: event for event in found}
    for key, resource in index.of_type("Procedure"):
        for ref in resource.get("complicationDetail") or []:
            target = index.resolve(ref)
            event = by_key.get(target) if target else None
            if event is not None and key not in event.due_to:
                event.kind, event.due_to = "complication", sorted(event.due_to + [key])
    return found


def _component_duration(resource: dict, rules: RuleBook) -> dict | None:
    for component in resource.get("component") or []:
        if rules.outcomes["controlDuration"] in codes_of(component.get("code")) and component.get("valueQuantity"):
            q = component["valueQuantity"]
            return {"value": q.get("value"), "unit": q.get("code") or q.get("unit")}
    return None


def outcome(key: str, resource: dict, index: ResourceIndex, rules: RuleBook) -> OutcomeEvent | None:
    codes = codes_of(resource.get("code"))
    if rules.disease_status["code"] not in codes and not {rules.outcomes["symptomControl"], rules.outcomes["biomarkerResponse"]} & set(codes):
        return None  # a lab value, a vital sign: not an outcome
    value = resource.get("valueCodeableConcept")
    text = next((n.get("text") for n in resource.get("note") or []), None) or label(value)
    treatments = _ext_refs(resource, TREATMENT_URL, index)
    if rules.disease_status["code"] in codes:
        mapped = next((rules.disease_status["values"][c] for c in codes_of(value) if c in rules.disease_status["values"]), None)
        if not mapped:
            return None
        return OutcomeEvent(key, "disease-status", mapped[1], mapped[0], text, treatments, None, [])
    kinds = {rules.outcomes["symptomControl"]: "symptom-control", rules.outcomes["biomarkerResponse"]: "biomarker-response"}
    kind = next((kinds[c] for c in codes if c in kinds), None)
    if kind is None:
        return None
    markers = [label(index.by_key[r].get("code")) for r in (index.resolve(d) for d in resource.get("derivedFrom") or []) if r]
    return OutcomeEvent(key, kind, next(iter(codes_of(value)), None), None, text, treatments,
                        _component_duration(resource, rules), sorted({m for m in markers if m}))


def outcomes(index: ResourceIndex, rules: RuleBook) -> list[OutcomeEvent]:
    found = (outcome(k, r, index, rules) for k, r in index.of_type("Observation"))
    return [o for o in found if o is not None]
