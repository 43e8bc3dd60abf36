"""Plain FHIR R4 builders for the treatment-line tests (no case format, no local extensions); no tests here."""
from __future__ import annotations

import json

from case_files import DATA

SCT = "http://snomed.info/sct"
RXN = "http://www.nlm.nih.gov/research/umls/rxnorm"
# Codes as in mappings/terminology/*.csv.
OCTREOTIDE, LANREOTIDE, FLUOROURACIL, STREPTOZOCIN = "7617", "68092", "4492", "10114"
CAPECITABINE, TEMOZOLOMIDE, EVEROLIMUS, GLUCOSE, DIAZOXIDE = "194000", "37776", "141704", "4850", "3327"
EMBOLIZATION, SIRT, PANCREATECTOMY, ICU = "57238002", "764677008", "287847009", "305351004"
DIARRHOEA, LIVER_METASTASIS, PATIENT_DECISION, NO_RESPONSE = "62315008", "94381002", "105480006", "266721009"
PATIENT = "Patient/p1"


def patient(birth: str = "1960-05-01", deceased: str | None = None) -> dict:
    resource = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": birth}
    if deceased:
        resource["deceasedDateTime"] = deceased
    return resource


def concept(system: str, code: str, text: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code}], **({"text": text} if text else {})}


def procedure(rid: str, code: str | None, when: str | None, status: str = "completed", text: str | None = None,
              **extra) -> dict:
    resource = {"resourceType": "Procedure", "id": rid, "status": status, "subject": {"reference": PATIENT},
                "code": concept(SCT, code, text) if code else {"text": text}}
    if when:
        resource["performedDateTime"] = when
    return resource | extra


def statement(rid: str, code: str | None, start: str | None, end: str | None = None, status: str = "completed",
              text: str | None = None, dose: float | None = None, every_h: float | None = None, **extra) -> dict:
    resource = {"resourceType": "MedicationStatement", "id": rid, "status": status, "subject": {"reference": PATIENT},
                "medicationCodeableConcept": concept(RXN, code, text) if code else {"text": text}}
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        resource["effectivePeriod"] = period
    if dose is not None:
        resource["dosage"] = [{"doseAndRate": [{"doseQuantity": {"value": dose, "unit": "mcg"}}],
                               "timing": {"repeat": {"frequency": 1, "period": every_h, "periodUnit": "h"}}}]
    return resource | extra


def request(rid: str, code: str, start: str, end: str | None = None, status: str = "active", **extra) -> dict:
    bounds = {k: v for k, v in (("start", start), ("end", end)) if v}
    return {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
            "subject": {"reference": PATIENT}, "authoredOn": start, "medicationCodeableConcept": concept(RXN, code),
            "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": bounds}}}]} | extra


def administration(rid: str, code: str, when: str, dose_mg: float = 30) -> dict:
    return {"resourceType": "MedicationAdministration", "id": rid, "status": "completed",
            "subject": {"reference": PATIENT}, "medicationCodeableConcept": concept(RXN, code),
            "effectiveDateTime": when, "dosage": {"dose": {"value": dose_mg, "unit": "mg"}}}


def condition(rid: str, code: str | None, onset: str, text: str | None = None, **extra) -> dict:
    return {"resourceType": "Condition", "id": rid, "subject": {"reference": PATIENT},
            "code": concept(SCT, code, text) if code else {"text": text}, "onsetDateTime": onset} | extra


def stop_reason(code: str) -> list[dict]:
    return [concept(SCT, code)]


def case1_plain() -> list[dict]:
    """Case 1 (VIPoma) as a hospital might post it: real dates, requests and administrations, no extensions."""
    resources = [
        patient(),
        condition("vipoma", "253005002", "2010-03-15"),
        condition("liver-mets", LIVER_METASTASIS, "2010-03-15"),
        procedure("pancreatectomy", PANCREATECTOMY, "2010-04-12"),
        procedure("tae-1", EMBOLIZATION, "2010-06-01"),
        request("fu", FLUOROURACIL, "2010-06-01", "2011-03-01", status="completed"),
        request("stz", STREPTOZOCIN, "2010-06-01", "2011-03-01", status="completed"),
        procedure("tae-2", EMBOLIZATION, "2010-09-01"),
        procedure("tae-3", EMBOLIZATION, "2011-01-10"),
        condition("recurrence-1", DIARRHOEA, "2012-06-15"),
        request("octreotide-lar", OCTREOTIDE, "2012-07-01", "2013-03-05", status="stopped",
                statusReason=concept(SCT, PATIENT_DECISION)),
        condition("recurrence-2", DIARRHOEA, "2013-01-20"),
        procedure("sirt", SIRT, "2013-02-05"),
        condition("recurrence-3", DIARRHOEA, "2015-03-01"),
        request("octreotide-resumed", OCTREOTIDE, "2015-03-10"),
    ]
    lar_days = ["2012-07-01", "2012-07-29", "2012-08-26", "2012-09-23", "2012-10-21", "2012-11-18", "2012-12-16",
                "2013-01-13", "2013-02-10"]
    resources += [administration(f"lar-{n}", OCTREOTIDE, day) for n, day in enumerate(lar_days)]
    return resources


def seed_resources(case: str) -> list[dict]:
    """The resources of a seed case's golden Bundle (tests/data/<case>/expected-bundle.json)."""
    bundle = json.loads((DATA / case / "expected-bundle.json").read_text(encoding="utf-8"))
    return [entry["resource"] for entry in bundle["entry"]]
