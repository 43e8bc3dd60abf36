"""Every fact of the two seed cases listed in the foundation issue is in the mapped Bundle, reviewed against the text."""
from __future__ import annotations

import pytest
from case_files import load_case
from fhir_helpers import by_fact, codes, event_time, extension, relative

from mappings.case_bundle import case_to_bundle

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


@pytest.fixture(scope="module")
def case1() -> dict[str, dict]:
    return by_fact(case_to_bundle(load_case("case1-vipoma")))


@pytest.fixture(scope="module")
def case2() -> dict[str, dict]:
    return by_fact(case_to_bundle(load_case("case2-insulinoma")))


def test_case1_demographics_and_primary_tumour_with_histology_and_syndrome(case1):
    assert case1["patient"]["gender"] == "female"
    primary = case1["primary-tumour"]
    assert ("sct", "253005002") in codes(primary["code"]) and ("icd-10-cm", "C25.4") in codes(primary["code"])
    assert primary["onsetAge"] == {"value": 50, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}
    histology = extension(primary, MCODE + "mcode-histology-morphology-behavior")[0]["valueCodeableConcept"]
    assert ("icd-o-3", "8155/3") in codes(histology)
    syndrome = case1["primary-tumour/syndrome"]  # its own Condition, pointed to by evidence.detail (no evidence.code)
    assert primary["evidence"] == [{"detail": [{"reference": _url(case1, "primary-tumour", "syndrome")}]}]
    assert "VIP" in syndrome["code"]["text"] and "watery diarrhoea" in syndrome["code"]["text"]
    assert primary["meta"]["profile"] == [MCODE + "mcode-primary-cancer-condition"]


def test_case1_liver_metastases_point_to_the_primary(case1):
    mets = case1["liver-metastases"]
    assert ("sct", "94381002") in codes(mets["code"]) and ("sct", "10200004") in codes(mets["bodySite"][0])
    related = extension(mets, "http://hl7.org/fhir/StructureDefinition/condition-related")[0]
    assert related["valueReference"]["reference"] == _url(case1, "primary-tumour")
    assert mets["meta"]["profile"] == [MCODE + "mcode-secondary-cancer-condition"]


def test_case1_biomarkers_keep_their_units_as_reported(case1):
    vip = case1["vip-at-presentation"]
    assert vip["valueQuantity"] == {"value": 75, "unit": "pmol/l", "system": "http://unitsofmeasure.org", "code": "pmol/L"}
    assert vip["interpretation"][0]["coding"][0]["code"] == "H"
    assert "coding" not in vip["code"]  # no verified LOINC for VIP in moles/volume: text only
    hiaa = case1["hiaa-at-presentation"]
    assert ("loinc.org", "1695-6") in codes(hiaa["code"])
    assert hiaa["valueQuantity"]["unit"] == "mg/24 h" and hiaa["valueQuantity"]["code"] == "mg/(24.h)"
    assert hiaa["meta"]["profile"] == [MCODE + "mcode-tumor-marker-test"]
    potassium = case1["potassium-recurrence-1"]
    assert ("loinc.org", "2823-3") in codes(potassium["code"])
    assert potassium["valueQuantity"] == {"value": 1.9, "unit": "mEq/l", "system": "http://unitsofmeasure.org", "code": "meq/L"}


def test_case1_chromogranin_a_32_then_normal(case1):
    before, after = case1["chromogranin-before-sirt"], case1["chromogranin-after-sirt"]
    assert before["valueQuantity"]["value"] == 32 and before["valueQuantity"]["unit"] == "U/l"
    assert after["valueCodeableConcept"]["text"] == "Normal"
    assert after["interpretation"][0]["coding"][0]["code"] == "N"
    assert relative(before)["relationship"] == "before-start" and relative(after)["relationship"] == "after-start"  # SIRT has no end time


def test_case1_immunohistochemistry_positive_and_ki67_absent_with_reason(case1):
    for fact, loinc in (("ihc-chromogranin", "10472-9"), ("ihc-synaptophysin", "10514-8")):
        assert ("loinc.org", loinc) in codes(case1[fact]["code"])
        assert ("sct", "10828004") in codes(case1[fact]["valueCodeableConcept"])
    pp = case1["ihc-pancreatic-polypeptide"]
    assert "Pancreatic polypeptide" in pp["code"]["text"] and ("sct", "10828004") in codes(pp["valueCodeableConcept"])
    ki67 = case1["ki67"]
    assert ("loinc.org", "29593-1") in codes(ki67["code"])
    assert ki67["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert ki67["dataAbsentReason"]["text"] == "Ki-67 data not available"
    assert not any(k.startswith("value") for k in ki67)


def test_case1_procedures_with_their_details(case1):
    assert ("sct", "287847009") in codes(case1["distal-pancreatectomy"]["code"])
    assert "Distal pancreatectomy" in case1["distal-pancreatectomy"]["code"]["text"]
    tae = case1["tae-series"]
    assert ("sct", "57238002") in codes(tae["code"])
    assert tae["usedCode"][0]["text"] == "Polyvinyl alcohol particles (PVA) 150–200 µm"
    assert "tumoral arteries" in tae["bodySite"][0]["text"].lower()
    timing = event_time(tae)
    assert timing["end"]["low"]["value"] - timing["start"]["low"]["value"] == 0.75  # 9 months
    planned = case1["two-stage-hepatectomy"]
    assert planned["status"] == "not-done" and "small future liver remnant" in planned["statusReason"]["text"]
    assert not any(k.startswith("performed") for k in planned)
    sirt = case1["sirt-right-lobe"]
    assert ("sct", "1156383000") in codes(sirt["code"]) and sirt["bodySite"][0]["text"] == "Right hepatic lobe"
    assert "no SIRT-related toxicity" in sirt["outcome"]["text"]


def test_case1_medications_with_dose_frequency_period_and_stop_reason(case1):
    lar = case1["octreotide-lar/octreotide"]
    assert ("rxnorm", "7617") in codes(lar["medicationCodeableConcept"]) and "long-acting" in lar["medicationCodeableConcept"]["text"]
    dosage = lar["dosage"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": 30, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert dosage["timing"]["repeat"] == {"frequency": 1, "period": 4, "periodUnit": "wk"}
    assert lar["status"] == "stopped" and ("sct", "105480006") in codes(lar["statusReason"][0])
    for part, rxnorm in (("chemo-5fu-stz/fluorouracil", "4492"), ("chemo-5fu-stz/streptozocin", "10114")):
        chemo = case1[part]
        assert ("rxnorm", rxnorm) in codes(chemo["medicationCodeableConcept"])
        timing = event_time(chemo)
        assert timing["end"]["low"]["value"] - timing["start"]["low"]["value"] == 0.75
    assert case1["octreotide-resumed/octreotide"]["status"] == "active"


def test_case1_outcomes_symptom_control_response_and_biomarker(case1):
    assert case1["symptom-control-tae"]["valueCodeableConcept"]["coding"][0]["code"] == "complete"
    octreotide = case1["symptom-control-octreotide"]
    assert octreotide["valueCodeableConcept"]["coding"][0]["code"] == "partial"
    assert any(n["text"] == "Transient." for n in octreotide["note"])
    sirt = case1["symptom-control-sirt"]
    assert sirt["valueCodeableConcept"]["coding"][0]["code"] == "complete"
    assert sirt["component"][0]["valueQuantity"]["value"] == 2 and sirt["component"][0]["valueQuantity"]["code"] == "a"
    assert case1["biomarker-response-sirt"]["valueCodeableConcept"]["coding"][0]["code"] == "normalised"
    assert len(case1["biomarker-response-sirt"]["derivedFrom"]) == 2
    stable = case1["stable-disease-tae"]
    assert stable["code"]["coding"][0]["code"] == "97509-4" and ("sct", "359746009") in codes(stable["valueCodeableConcept"])


def test_case2_primary_insulinoma_and_curative_pancreatectomy(case2):
    assert case2["patient"]["gender"] == "male"
    primary = case2["primary-tumour"]
    assert ("sct", "713189001") in codes(primary["code"])
    assert primary["onsetAge"]["value"] == 68
    assert primary["evidence"] == [{"detail": [{"reference": _url(case2, "hypoglycaemia-at-presentation")}]}]
    assert ("sct", "302866003") in codes(case2["hypoglycaemia-at-presentation"]["code"])
    surgery = case2["caudal-pancreatectomy"]
    intent = extension(surgery, MCODE + "mcode-procedure-intent")[0]["valueCodeableConcept"]
    assert ("sct", "373808002") in codes(intent)
    assert ("sct", "10495-0") not in codes(case2["ihc-insulin"]["code"]) and ("loinc.org", "10495-0") in codes(case2["ihc-insulin"]["code"])
    assert case2["ki67"]["dataAbsentReason"]["coding"][0]["code"] == "unknown"


def test_case2_liver_resections_by_segment_two_and_five_years_later(case2):
    ivb, iii = case2["liver-resection-ivb"], case2["liver-resection-iii"]
    assert ("sct", "174430004") in codes(ivb["code"])
    assert ("sct", "277958008") in codes(ivb["bodySite"][1]) and ivb["bodySite"][1]["text"] == "Liver segment IVb"
    assert ("sct", "277957003") in codes(iii["bodySite"][1])
    assert ivb["performedRange"]["low"]["value"] == 70 and iii["performedRange"]["low"]["value"] == 73
    assert relative(ivb)["offset"]["value"] == 2 and relative(ivb)["offset"]["code"] == "a"


def test_case2_chemotherapy_three_courses_then_octreotide_escalation(case2):
    chemo = case2["chemo-stz-5fu/streptozocin"]
    assert {"text": "3 courses"} in chemo["note"] and ("sct", "266721009") in codes(chemo["statusReason"][0])
    first, second = case2["octreotide-sc/octreotide/dose-1"], case2["octreotide-sc/octreotide/dose-2"]
    for statement, dose in ((first, 50), (second, 100)):
        dosage = statement["dosage"][0]
        assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": dose, "unit": "mcg", "system": "http://unitsofmeasure.org", "code": "ug"}
        assert dosage["timing"]["repeat"] == {"frequency": 1, "period": 8, "periodUnit": "h"}
        assert ("sct", "34206005") in codes(dosage["route"])


def test_case2_embolizations_icu_and_intravenous_octreotide_with_glucose(case2):
    series = case2["tae-series"]
    assert extension(series, "https://oncology-gateway.example.org/fhir/StructureDefinition/session-count")[0]["valueInteger"] == 3
    assert [u["text"] for u in series["usedCode"]] == ["Polyvinyl alcohol particles (PVA) 150–300 µm", "Polyvinyl alcohol particles (PVA) 300–500 µm"]
    icu = case2["icu-admission"]  # a stay, so an Encounter (issue 14), typed by the ICU admission concept
    assert icu["resourceType"] == "Encounter" and ("sct", "305351004") in codes(icu["type"][0])
    iv = case2["octreotide-iv/octreotide"]
    assert ("sct", "47625008") in codes(iv["dosage"][0]["route"]) and "Continuous" in iv["dosage"][0]["text"]
    assert ("rxnorm", "4850") in codes(case2["glucose-iv/glucose"]["medicationCodeableConcept"])
    last = case2["tae-left-hepatic-artery"]
    assert ("sct", "21807003") in codes(last["bodySite"][0]) and last["bodySite"][0]["text"] == "Left hepatic artery"
    bleeding = case2["gi-bleeding"]
    assert ("sct", "37372002") in codes(bleeding["code"])
    assert last["complicationDetail"] == [{"reference": _url(case2, "gi-bleeding")}]


def test_case2_sirt_two_weeks_later_then_subcutaneous_300_mcg_daily(case2):
    sirt = case2["sirt-right-hepatic-artery"]
    assert relative(sirt)["offset"] == {"value": 2, "unit": "weeks", "system": "http://unitsofmeasure.org", "code": "wk"}
    daily = case2["octreotide-sc-after-sirt/octreotide"]["dosage"][0]["extension"][0]["valueQuantity"]
    assert daily == {"value": 300, "unit": "mcg", "system": "http://unitsofmeasure.org", "code": "ug"}
    transaminases = case2["hypertransaminasaemia"]
    assert transaminases["clinicalStatus"]["coding"][0]["code"] == "resolved" and transaminases["severity"]["text"] == "mild"
    assert relative(transaminases)["offset"]["value"] == 2 and relative(transaminases)["offset"]["code"] == "mo"
    response = case2["complete-response-sirt"]
    assert ("sct", "550991000124107") in codes(response["valueCodeableConcept"])
    assert ("Thesaurus.owl", "C4870") in codes(response["valueCodeableConcept"])


def test_case2_thromboembolic_events_and_death(case2):
    assert ("sct", "230690007") in codes(case2["thromboembolic-stroke"]["code"])
    assert ("sct", "59282003") in codes(case2["thromboembolic-pe"]["code"])
    femoral = case2["thromboembolic-femoral"]
    assert femoral["code"] == {"text": "Bilateral femoral thrombosis"}  # no verified femoral-thrombosis code
    assert relative(case2["thromboembolic-stroke"])["offset"]["value"] == 11
    patient = case2["patient"]
    assert patient["deceasedBoolean"] is True
    death = event_time(patient["_deceasedBoolean"])
    assert death["start"]["low"]["value"] > case2["thromboembolic-stroke"]["onsetRange"]["low"]["value"]


def _url(facts: dict[str, dict], fact_id: str, part: str | None = None) -> str:
    from mappings.references import fact_identifier, full_url

    return full_url(fact_identifier(facts["patient"]["identifier"][0]["value"].split("/")[0], fact_id, part))
