"""Condition: primary tumour and metastases (mCODE where they conform), symptoms, complications, critical events."""
from __future__ import annotations

from mappings import fhir_time, terminology
from mappings.context import MCODE, MapContext
from mappings.fhir_vocabulary import DATA_ABSENT_URL, DUE_TO_URL
from mappings.references import full_url

PRIMARY_PROFILE = f"{MCODE}/mcode-primary-cancer-condition"
SECONDARY_PROFILE = f"{MCODE}/mcode-secondary-cancer-condition"
HISTOLOGY_URL = f"{MCODE}/mcode-histology-morphology-behavior"
RELATED_URL = "http://hl7.org/fhir/StructureDefinition/condition-related"
SYNDROME_PART = "syndrome"
# Couinaud segment as written in the case -> concept key (terminology/case_liver_segments.csv, with sources).
SEGMENT_KEYS = {segment: row["key"] for segment, row in terminology.case_values("liver_segments").items()}
LOBE_TEXT = {"left": "Left lobe of liver", "right": "Right lobe of liver", "caudate": "Caudate lobe of liver",
             "both": "Both lobes of liver"}


def body_sites(site: dict) -> list[dict]:
    """The site as given, plus one coded entry per liver segment (IVa/IVb are coded as segment IV), the artery
    (coded when the terminology table has it, e.g. 'right hepatic artery') and the lobe. No verified code exists
    for a liver lobe, so the lobe is text; it is left out when the site's own text already names it."""
    sites = [terminology.concept(site.get("concept"), site.get("text"))]
    for segment in site.get("segments", []):
        sites.append(terminology.concept(SEGMENT_KEYS[segment], f"Liver segment {segment}"))
    artery = site.get("artery")
    artery_key = artery.lower().replace(" ", "-") if artery else None
    if artery and artery_key != site.get("concept") and terminology.known(artery_key or ""):
        sites.append(terminology.concept(artery_key, artery[:1].upper() + artery[1:]))
    lobe = site.get("lobe")
    if lobe and "lobe" not in (site.get("text") or "").lower():
        sites.append({"text": LOBE_TEXT[lobe]})
    return sites


def _clinical_status(fact: dict) -> dict:
    """As the case states it; else resolved when it abated or was transient, else active. 'unknown' is said with
    data-absent-reason, not guessed: the text often never says whether a symptom or event ended."""
    status = fact.get("clinicalStatus") or ("resolved" if fact.get("abatement") or fact.get("transient") else "active")
    if status == "unknown":
        return {"extension": [{"url": DATA_ABSENT_URL, "valueCode": "unknown"}], "text": "Unknown"}
    return terminology.concept(f"clinical-{status}")


def to_fhir_condition(ctx: MapContext, fact: dict) -> dict:
    role = fact["role"]
    code = terminology.concept(fact.get("concept"), fact.get("text"))
    resource: dict = {
        "resourceType": "Condition",
        "identifier": [ctx.identifier(fact["id"])],
        "clinicalStatus": _clinical_status(fact),
        "verificationStatus": terminology.concept("verification-confirmed"),
        "category": [terminology.concept("category-problem-list-item")],
        "code": code,
        "subject": ctx.patient_ref,
    }
    extensions: list[dict] = []
    if fact.get("histology"):
        extensions.append({"url": HISTOLOGY_URL, "valueCodeableConcept": terminology.concept(fact["histology"])})
    if fact.get("primary"):
        extensions.append({"url": RELATED_URL, "valueReference": ctx.ref(fact["primary"])})
    if fact.get("dueTo"):
        extensions.append({"url": DUE_TO_URL, "valueReference": ctx.ref(fact["dueTo"])})
    start, end = ctx.timeline.fact_start(fact["id"]), ctx.timeline.end(fact["id"])
    extensions += ctx.time_extensions(start, end)
    resource["extension"] = extensions
    if fact.get("severity"):
        resource["severity"] = {"text": fact["severity"]}
    if fact.get("site"):
        resource["bodySite"] = body_sites(fact["site"])
    resource.update(fhir_time.standard_time("onset", start, None, allow_age=True))
    if end is not None:
        resource.update(fhir_time.standard_time("abatement", end, None, allow_age=True))
    evidence = _manifestations(ctx, fact)
    if evidence:
        resource["evidence"] = evidence
    notes = [n for n in (fact.get("note"), "Transient." if fact.get("transient") else None,
                         f"Laterality: {fact['laterality']}." if fact.get("laterality") else None) if n]
    if notes:
        resource["note"] = [{"text": n} for n in notes]
    profile = _profile(role, code)
    if profile:
        resource["meta"] = {"profile": [profile]}
    return resource


def _manifestations(ctx: MapContext, fact: dict) -> list[dict]:
    """Condition.evidence.detail of a tumour: its functional syndrome. mCODE binds evidence.code (required) to how
    the diagnosis was made, so a syndrome goes in detail, as a Condition of its own, and evidence.code stays empty."""
    refs = [ctx.ref(m) for m in fact.get("manifestations", [])]
    if fact.get("functionalSyndrome"):
        refs.append({"reference": full_url(ctx.identifier(fact["id"], SYNDROME_PART))})
    return [{"detail": refs}] if refs else []


def to_fhir_syndrome_condition(ctx: MapContext, fact: dict) -> dict:
    """A tumour's functional syndrome given inline (functionalSyndrome) as its own Condition, which the tumour's
    evidence.detail points to."""
    syndrome = fact["functionalSyndrome"]
    start = ctx.timeline.start(fact["id"])
    assert start is not None  # onset is required of every condition
    resource: dict = {
        "resourceType": "Condition",
        "identifier": [ctx.identifier(fact["id"], SYNDROME_PART)],
        "extension": ctx.time_extensions(start),
        "clinicalStatus": terminology.concept("clinical-active"),
        "verificationStatus": terminology.concept("verification-confirmed"),
        "category": [terminology.concept("category-problem-list-item")],
        "code": terminology.concept(syndrome.get("concept"), syndrome.get("text")),
        "subject": ctx.patient_ref,
    }
    resource.update(fhir_time.standard_time("onset", start, None, allow_age=True))
    return resource


def _profile(role: str, code: dict) -> str | None:
    # Both mCODE cancer-condition profiles need a coded disorder and the problem-list category, which we always set.
    if not code.get("coding"):
        return None
    return {"primary-tumour": PRIMARY_PROFILE, "metastasis": SECONDARY_PROFILE}.get(role)
