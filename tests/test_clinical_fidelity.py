"""What an oncologist and a cancer registrar corrected in the seed cases (issue 14), one test per correction."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from case_files import load_case
from fhir_helpers import by_fact, codes, event_time, extension, relative

from mappings.case_bundle import case_to_bundle
from mappings.references import fact_identifier, full_url
from registry.procedure_history import procedure_history, public

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
DEATH = "https://oncology-gateway.example.org/fhir/StructureDefinition/death-circumstances"
RECORD_SCHEMA = Path(__file__).resolve().parent.parent / "mappings" / "registry_record_schema.json"


@pytest.fixture(scope="module")
def bundles() -> dict[str, dict]:
    return {name: case_to_bundle(load_case(name)) for name in ("case1-vipoma", "case2-insulinoma")}


@pytest.fixture(scope="module")
def case1(bundles) -> dict[str, dict]:
    return by_fact(bundles["case1-vipoma"])


@pytest.fixture(scope="module")
def case2(bundles) -> dict[str, dict]:
    return by_fact(bundles["case2-insulinoma"])


def _url(case_id: str, fact_id: str, part: str | None = None) -> str:
    return full_url(fact_identifier(case_id, fact_id, part))


def _status(condition: dict) -> str:
    status = condition["clinicalStatus"]
    if any(e["url"] == DATA_ABSENT for e in status.get("extension", [])):
        return "unknown"
    return status["coding"][0]["code"]


# -- profile claims ------------------------------------------------------------------------------------------

def test_primary_cancer_evidence_carries_no_syndrome_code_and_the_syndrome_is_its_own_condition(case1, case2):
    for facts, case_id, syndrome in ((case1, "pnet-sirt-case-1", ("primary-tumour", "syndrome")),
                                     (case2, "pnet-sirt-case-2", ("hypoglycaemia-at-presentation", None))):
        primary = facts["primary-tumour"]
        assert all("code" not in evidence for evidence in primary["evidence"])  # bound to how the diagnosis was made
        assert primary["evidence"][0]["detail"] == [{"reference": _url(case_id, *syndrome)}]
        target = facts["/".join(p for p in syndrome if p)]
        assert target["resourceType"] == "Condition" and "meta" not in target
    assert ("sct", "302866003") in codes(case2["hypoglycaemia-at-presentation"]["code"])


def test_the_planned_two_stage_hepatectomy_that_was_never_done_claims_no_surgical_profile(case1):
    planned = case1["two-stage-hepatectomy"]
    assert planned["status"] == "not-done" and "meta" not in planned
    assert case1["distal-pancreatectomy"]["meta"]["profile"] == [MCODE + "mcode-cancer-related-surgical-procedure"]


def test_nine_months_later_counts_from_the_end_of_the_year_of_stable_disease_not_the_surgery_never_done(case1):
    anchor = relative(case1["syndrome-recurrence-1"])
    assert anchor["target"]["reference"] == _url("pnet-sirt-case-1", "stable-disease-tae")
    assert anchor["relationship"] == "after-end" and anchor["offset"]["value"] == 9
    assert event_time(case1["syndrome-recurrence-1"])["approximate"] is True


def test_every_mcode_resource_has_a_cancer_patient_subject_with_a_masked_name(bundles):
    for bundle in bundles.values():
        patient = bundle["entry"][0]["resource"]
        assert patient["meta"]["profile"] == [MCODE + "mcode-cancer-patient"]
        assert patient["name"] == [{"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}]  # us-core-6
        profiled = [e["resource"] for e in bundle["entry"][1:] if "meta" in e["resource"]]
        assert profiled and all(r["subject"] == {"reference": bundle["entry"][0]["fullUrl"]} for r in profiled)


# -- the record closes --------------------------------------------------------------------------------------

def test_symptoms_controlled_by_treatment_are_resolved_with_an_abatement(case1, case2):
    for fact in ("diarrhoea-at-presentation", "weight-loss-at-presentation"):
        assert _status(case1[fact]) == "resolved"
        assert "end" in event_time(case1[fact]) and case1[fact]["abatementRange"]  # abated at TAE's symptom control
    for fact in ("syndrome-recurrence-1", "metabolic-acidosis-1", "syndrome-recurrence-2"):
        assert _status(case1[fact]) == "resolved" and "abatementRange" in case1[fact]
    assert _status(case1["syndrome-recurrence-3"]) == "active"  # octreotide resumed; the report ends there
    for fact in ("hypoglycaemic-crisis", "hypoglycaemic-coma-risk"):  # "never suffered from hypoglycemia thereafter"
        assert _status(case2[fact]) == "resolved" and "abatementRange" in case2[fact]


def test_events_whose_end_the_text_never_gives_are_unknown_not_active(case2):
    for fact in ("gi-bleeding", "thromboembolic-stroke", "thromboembolic-femoral", "thromboembolic-pe",
                 "hypoglycaemia-at-presentation"):
        assert _status(case2[fact]) == "unknown", fact
        assert not any(k.startswith("abatement") for k in case2[fact])


def test_cancer_conditions_follow_the_disease_status(case1, case2):
    for facts in (case1, case2):
        assert _status(facts["primary-tumour"]) == "resolved"  # resected, like the resected metastases
    for fact in ("liver-metastasis-ivb", "liver-metastasis-iii"):
        assert _status(case2[fact]) == "resolved"
    for fact in ("liver-metastases-unresectable", "liver-metastases-new"):  # complete response, still so at death
        assert _status(case2[fact]) == "remission" and "abatementRange" in case2[fact]
    assert _status(case1["liver-metastases"]) == "active"  # stable disease after SIRT


def test_death_in_complete_response_keeps_status_at_death_unknown_cause_and_its_anchor(case2):
    patient = case2["patient"]
    (circumstances,) = extension(patient, DEATH)
    parts = {p["url"]: p for p in circumstances["extension"]}
    assert "complete response" in parts["text"]["valueString"]
    assert parts["diseaseStatus"]["valueString"] == "Complete response of the liver metastases"
    cause = parts["cause"]["valueCodeableConcept"]
    assert cause["extension"] == [{"url": DATA_ABSENT, "valueCode": "unknown"}]
    death = relative(patient["_deceasedBoolean"])
    assert death["target"]["reference"] == _url("pnet-sirt-case-2", "thromboembolic-stroke")
    timing = event_time(patient["_deceasedBoolean"])
    assert "thromboembolic episode" in timing["text"] and timing["approximate"] is True


def test_case_report_offsets_are_marked_approximate(case2):
    for fact in ("liver-resection-ivb", "liver-resection-iii", "liver-metastases-unresectable", "hypoglycaemic-crisis",
                 "thromboembolic-stroke", "complete-response-sirt"):
        assert event_time(case2[fact]).get("approximate") is True, fact
    assert "approximate" not in event_time(case2["caudal-pancreatectomy"])  # nothing approximate on its way back


# -- codes, units and sites ---------------------------------------------------------------------------------

def test_chromogranin_a_assay_units_are_not_the_ucum_enzyme_unit(case1):
    quantity = case1["chromogranin-before-sirt"]["valueQuantity"]
    assert quantity == {"value": 32, "unit": "U/l"}


def test_critically_low_potassium_is_interpreted_ll(case1):
    interpretation = case1["potassium-recurrence-1"]["interpretation"][0]["coding"][0]
    assert (interpretation["system"].rsplit("/", 1)[-1], interpretation["code"]) == ("v3-ObservationInterpretation", "LL")


def test_the_left_hepatic_artery_embolization_codes_its_artery(case2):
    site = case2["tae-left-hepatic-artery"]["bodySite"][0]
    assert codes(site) == {("sct", "21807003")} and site["text"] == "Left hepatic artery"


def test_morphology_extension_and_progression_carry_no_ncit_disease_concepts(bundles):
    text = json.dumps(bundles)
    for code in ("C65186", "C65189", "C8510"):
        assert f'"{code}"' not in text


def test_grade_is_recorded_as_unknown_because_ki67_was_not_available(case1, case2):
    for facts in (case1, case2):
        grade = facts["histologic-grade"]
        assert ("loinc.org", "33732-9") in codes(grade["code"])
        assert grade["dataAbsentReason"]["coding"][0]["code"] == "unknown" and "Ki-67" in grade["dataAbsentReason"]["text"]
        assert not any(k.startswith("value") for k in grade)


def test_case1_is_m1_at_diagnosis(case1):
    m = case1["m-category-at-diagnosis"]
    assert ("loinc.org", "21907-1") in codes(m["code"]) and ("sct", "1229903009") in codes(m["valueCodeableConcept"])
    assert m["focus"] == [{"reference": _url("pnet-sirt-case-1", "primary-tumour")}]
    assert event_time(m)["start"]["value"] == 50  # at diagnosis, age 50


def test_primary_sites_carry_icd_o_3_topography(case1, case2):
    assert ("icd-o-3", "C25.9") in codes(case1["primary-tumour"]["bodySite"][0])
    assert ("icd-o-3", "C25.2") in codes(case2["caudal-pancreatectomy"]["bodySite"][0])


# -- what registries read -----------------------------------------------------------------------------------

def _records(bundle: dict) -> list[dict]:
    resources = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Procedure"]
    for resource in resources:
        resource["id"] = resource["identifier"][0]["value"].split("/", 1)[1]
    return [public(r) for r in procedure_history(resources, "Patient/p")]


def test_registry_records_follow_their_json_schema_with_sites_once_and_times_as_data(bundles):
    validator = jsonschema.Draft202012Validator(json.loads(RECORD_SCHEMA.read_text(encoding="utf-8")))
    records = [r for b in bundles.values() for r in _records(b)]
    for record in records:
        validator.validate(record)
        assert len(record["bodySite"]) == len(set(record["bodySite"]))
    ivb = next(r for r in records if r["identifier"].endswith("liver-resection-ivb"))
    assert ivb["bodySite"] == ["Liver segment IVb"]
    assert ivb["time"]["start"]["age"] == {"low": 70, "high": None, "unit": "a"}
    assert ivb["time"]["relative"]["offset"]["value"] == 2 and ivb["time"]["approximate"] is True
    pancreatectomy = next(r for r in records if r["identifier"].endswith("caudal-pancreatectomy"))
    assert pancreatectomy["sites"][0]["topography"]["code"] == "C25.2"


# -- what the last session left open (issue 14) -------------------------------------------------------------

RADIOTHERAPY_CATEGORY = ("sct", "108290001")


def test_hypokalaemia_of_the_recurrence_is_its_own_coded_condition(case1):
    hypokalaemia = case1["hypokalaemia-1"]
    assert ("sct", "43339004") in codes(hypokalaemia["code"]) and "1.9 mEq/l" in hypokalaemia["code"]["text"]
    assert relative(hypokalaemia)["target"]["reference"] == _url("pnet-sirt-case-1", "syndrome-recurrence-1")
    assert _status(hypokalaemia) == "resolved"  # with the electrolyte disturbances, after SIRT


def test_sirt_asserts_no_yttrium_and_is_recorded_as_radiation_therapy(case1, case2):
    for sirt in (case1["sirt-right-lobe"], case2["sirt-right-hepatic-artery"]):
        assert codes(sirt["code"]) == {("sct", "1156383000")}  # intravascular brachytherapy: no isotope asserted
        assert "SIRT" in sirt["code"]["text"]
        assert RADIOTHERAPY_CATEGORY in codes(sirt["category"])
        assert "meta" not in sirt  # RadiotherapyCourseSummary does not fit (fixed code, Period, dose volumes)
    assert "category" not in case2["tae-left-hepatic-artery"]


def test_arteries_and_the_lobe_are_body_sites_where_the_text_gives_them(case1, case2):
    sirt = case2["sirt-right-hepatic-artery"]["bodySite"]
    assert codes(sirt[1]) == {("sct", "69421009")} and sirt[1]["text"] == "Right hepatic artery"
    assert sirt[2] == {"text": "Right lobe of liver"}  # no verified code for a liver lobe
    assert case2["tae-left-hepatic-artery"]["bodySite"][1] == {"text": "Left lobe of liver"}
    assert [s["text"] for s in case1["sirt-right-lobe"]["bodySite"]] == ["Right hepatic lobe"]  # named once


def test_the_status_at_death_is_a_cancer_disease_status_observation(case2):
    status = case2["disease-status-at-death"]
    assert status["meta"]["profile"] == [MCODE + "mcode-cancer-disease-status"]
    assert ("loinc.org", "97509-4") in codes(status["code"])
    assert ("sct", "550991000124107") in codes(status["valueCodeableConcept"])  # in full remission
    assert status["focus"] == [{"reference": _url("pnet-sirt-case-2", "liver-metastases-unresectable")}]
    assert relative(status)["target"]["reference"] == _url("pnet-sirt-case-2", "patient")


def _lines(bundle: dict) -> list[dict]:
    from treatment_lines.engine import summarise
    return summarise([e["resource"] for e in bundle["entry"]])["lines"]


def test_case1_first_line_was_completed_as_planned_and_the_recurrence_ends_the_interval_after_it(bundles):
    line1 = _lines(bundles["case1-vipoma"])[0]
    assert line1["endReason"]["code"] == "completed" and line1["endReason"]["contributing"] == []
    assert line1["outcomes"]["syndromeControl"]["value"] == "complete"


def test_case2_embolizations_gave_short_lived_control_and_ended_for_failure_and_bleeding(bundles, case2):
    line3 = _lines(bundles["case2-insulinoma"])[2]
    assert line3["outcomes"]["syndromeControl"]["value"] == "partial"  # short-lived, not none
    reason = line3["endReason"]
    assert reason["code"] == "no-response" and reason["evidence"] == [_url("pnet-sirt-case-2", "symptom-control-tae-left")]
    assert [(c["code"], c["evidence"]) for c in reason["contributing"]] == [
        ("toxicity", [_url("pnet-sirt-case-2", "gi-bleeding")])]
    coma = _url("pnet-sirt-case-2", "hypoglycaemic-coma-risk")  # began mid-line: a reason of a session, not the end
    assert coma not in reason["evidence"] and all(coma not in c["evidence"] for c in reason["contributing"])


def test_case2_sirt_line_runs_to_death_and_its_duration_agrees_with_its_end_reason(bundles):
    summary_lines = _lines(bundles["case2-insulinoma"])
    line4 = summary_lines[3]
    assert line4["endReason"]["code"] == "death"
    assert line4["end"]["low"] == 77.37 and line4["duration"]["minDays"] > 800  # to death, not the SIRT day
    assert line4["outcomes"]["syndromeControl"]["duration"] == {"value": 28, "unit": "mo"}


def test_line_figures_measured_from_approximate_offsets_say_so(bundles):
    case1_lines, case2_lines = _lines(bundles["case1-vipoma"]), _lines(bundles["case2-insulinoma"])
    assert case1_lines[0]["duration"]["approximate"] is False  # "for 9 months" after surgery: as given
    assert case1_lines[0]["timeToNextTreatment"]["approximate"] is True  # "9 months later", after "1 year"
    assert case1_lines[2]["duration"] == {"days": 0, "minDays": None, "maxDays": None, "reason": None,
                                          "approximate": False}  # one procedure, one day
    assert case2_lines[3]["duration"]["approximate"] is True  # "11 months", then "17 months"


def test_the_narrative_extractor_keeps_chromogranin_a_units_as_text():
    from narrative import extract_drafts
    report = (Path(__file__).parent / "data" / "case1-vipoma" / "narrative.txt").read_text(encoding="utf-8")
    draft = extract_drafts(report)[0]
    (cga,) = [o for o in draft["case"]["observations"] if o.get("value", {}).get("unit") == "U/l"]
    assert cga["value"] == {"value": 32, "unit": "U/l", "unitCoded": False}
    assert [e["ucum"] for e in draft["evidence"] if e["fact"] == cga["id"] and "ucum" in e] == [None]
    bundle = case_to_bundle(draft["case"])  # and the mapper keeps it as text, as for the seed case
    (quantity,) = [e["resource"]["valueQuantity"] for e in bundle["entry"]
                   if e["resource"].get("valueQuantity", {}).get("unit") == "U/l"]
    assert "code" not in quantity and "system" not in quantity


def test_the_icu_stay_is_an_inpatient_acute_encounter_not_a_procedure(bundles, case2):
    icu = case2["icu-admission"]
    assert icu["resourceType"] == "Encounter" and icu["status"] == "finished"
    assert (icu["class"]["system"].rsplit("/", 1)[-1], icu["class"]["code"]) == ("v3-ActCode", "ACUTE")
    assert ("sct", "305351004") in codes(icu["type"][0])
    assert icu["reasonReference"] == [{"reference": _url("pnet-sirt-case-2", "hypoglycaemic-coma-risk")}]
    assert "end" in event_time(icu)  # discharged 4 days after SIRT
    # what was given in the ICU still counts from it, and the lines still see the stay as a critical event
    assert relative(case2["octreotide-iv/octreotide"])["target"]["reference"] == _url("pnet-sirt-case-2", "icu-admission")
    from treatment_lines.engine import summarise
    critical = summarise([e["resource"] for e in bundles["case2-insulinoma"]["entry"]])["criticalEvents"]
    assert [e["kind"] for e in critical if e["reference"] == _url("pnet-sirt-case-2", "icu-admission")] == ["intensive-care"]
