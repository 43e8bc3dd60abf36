"""Turns the corpus histories of tests/data/lines/*.json into plain FHIR R4 resources; no tests here.

A history lists conditions and treatments in a compact form (a date list, a series every n days, or a
period); each treatment becomes FHIR the way EHR or claims data carry it: by RxNorm ingredient code, by an
RxNorm clinical drug code, by text only, by brand, or through a referenced Medication's ingredients.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "lines"
DRUGS = Path(__file__).resolve().parent.parent / "mappings" / "drugs"
RXN, SCT, ICD = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"
PATIENT = "Patient/corpus"


def histories() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(CORPUS.glob("*.json"))}


def ingredient_codes() -> dict[str, str]:
    with (DRUGS / "agents.csv").open(newline="", encoding="utf-8") as handle:
        return {row["agent"]: row["rxnorm"].split(";")[0] for row in csv.DictReader(handle) if row["rxnorm"]}


def clinical_drug_codes() -> dict[str, tuple[str, str]]:
    """Agent -> (code, display) of one single-agent RxNorm clinical drug (SCD) from products.csv."""
    found: dict[str, tuple[str, str]] = {}
    with (DRUGS / "products.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["tty"] == "SCD" and ";" not in row["agents"]:
                found.setdefault(row["agents"], (row["code"], row["display"]))
    return found


def _dates(treatment: dict) -> list[str]:
    if "dates" in treatment:
        return list(treatment["dates"])
    if "series" in treatment:
        series = treatment["series"]
        first = dt.date.fromisoformat(series["from"])
        return [(first + dt.timedelta(days=series["every"] * n)).isoformat() for n in range(series["times"])]
    return [treatment["period"][0]]


def _medication(treatment: dict, codes: dict[str, str]) -> dict:
    """medicationCodeableConcept (or medicationReference marker) as the treatment's `as` asks."""
    how, agent = treatment.get("as", "ingredient"), treatment.get("agent")
    if how == "ingredient" and agent in codes:
        return {"medicationCodeableConcept": {"coding": [{"system": RXN, "code": codes[agent], "display": agent}]}}
    if how == "scd":
        return {"medicationCodeableConcept": {"coding": [{"system": RXN, "code": treatment["code"], "display": treatment["text"]}],
                                              "text": treatment["text"]}}
    if how == "medication":
        return {"medicationReference": {"reference": f"Medication/{treatment['id']}-product"}}
    return {"medicationCodeableConcept": {"text": treatment.get("text") or agent}}


def _product(treatment: dict, codes: dict[str, str]) -> dict:
    ingredients = [{"itemCodeableConcept": {"coding": [{"system": RXN, "code": codes[a], "display": a}]}}
                   for a in treatment["ingredients"]]
    return {"resourceType": "Medication", "id": f"{treatment['id']}-product", "code": {"text": treatment["text"]},
            "ingredient": ingredients}


def _one(treatment: dict, rid: str, when: str, codes: dict[str, str]) -> dict:
    kind = treatment.get("kind", "MedicationAdministration")
    common = {"id": rid, "subject": {"reference": PATIENT}, "status": treatment.get("status", "completed")}
    if treatment.get("reason"):
        common["reasonReference"] = [{"reference": f"Condition/{treatment['reason']}"}]
    if treatment.get("partOf"):
        common["partOf"] = [{"reference": f"Procedure/{treatment['partOf']}"}]
    if kind == "Procedure":
        resource = {"resourceType": "Procedure", **common,
                    "code": {"coding": [{"system": SCT, "code": treatment["code"]}], "text": treatment.get("text")}}
        if "period" in treatment:
            resource["performedPeriod"] = {"start": treatment["period"][0], "end": treatment["period"][1]}
        else:
            resource["performedDateTime"] = when
        if treatment.get("site"):
            resource["bodySite"] = [{"text": treatment["site"]}]
        if treatment.get("reasonText"):
            resource["reasonCode"] = [{"text": treatment["reasonText"]}]
        return resource
    resource = {"resourceType": kind, **common, **_medication(treatment, codes)}
    if kind == "MedicationAdministration":
        resource["effectiveDateTime"] = when
        if treatment.get("request"):
            resource["request"] = {"reference": f"MedicationRequest/{treatment['request']}-{rid.rsplit('-', 1)[1]}"}
    elif kind == "MedicationStatement":
        period = treatment.get("period") or [when, when]
        resource["effectivePeriod"] = {k: v for k, v in zip(("start", "end"), period) if v}
    else:
        resource["intent"] = "order"
        resource["authoredOn"] = when
        if "period" in treatment:
            resource["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {
                k: v for k, v in zip(("start", "end"), treatment["period"]) if v}}}}]
    return resource


def to_fhir(history: dict) -> list[dict]:
    codes = ingredient_codes()
    patient = {"resourceType": "Patient", "id": "corpus", "birthDate": history["patient"]["birthDate"]}
    if history["patient"].get("deceased"):
        patient["deceasedDateTime"] = history["patient"]["deceased"]
    out = [patient]
    for cond in history["conditions"]:
        codings = [{"system": ICD, "code": cond["icd10"]}] if cond.get("icd10") else []
        codings += [{"system": SCT, "code": cond["snomed"]}] if cond.get("snomed") else []
        out.append({"resourceType": "Condition", "id": cond["id"], "subject": {"reference": PATIENT},
                    "code": {"coding": codings, "text": cond["text"]}, "onsetDateTime": cond["onset"]})
    for treatment in history["treatments"]:
        if treatment.get("as") == "medication":
            out.append(_product(treatment, codes))
        dates = _dates(treatment)
        for n, when in enumerate(dates):
            rid = treatment["id"] if len(dates) == 1 and "series" not in treatment else f"{treatment['id']}-{n}"
            out.append(_one(treatment, rid, when, codes))
    return out
