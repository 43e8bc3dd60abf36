"""Rule by rule, on small plain-FHIR histories with real dates."""
from __future__ import annotations

from lines_builders import (
    DIAZOXIDE, EMBOLIZATION, EVEROLIMUS, FLUOROURACIL, GLUCOSE, LANREOTIDE, LIVER_METASTASIS, NO_RESPONSE,
    OCTREOTIDE, PANCREATECTOMY, PATIENT_DECISION, SIRT, CAPECITABINE, TEMOZOLOMIDE, concept, condition, patient,
    procedure, request, statement, stop_reason, SCT,
)
from treatment_lines.aggregate import aggregate
from treatment_lines.engine import summarise


def lines(resources: list[dict]) -> list[dict]:
    return summarise([patient()] + resources)["lines"]


def rule_ids(line: dict) -> list[str]:
    return [r["id"] for r in line["rulesFired"]]


def line_refs(line: dict, role: str = "line") -> list[str]:
    return sorted(c["reference"] for c in line["components"] if c["role"] == role)


def test_agents_started_within_the_regimen_window_are_one_line():
    found = lines([statement("cap", CAPECITABINE, "2015-01-01", "2015-06-01"),
                   statement("tem", TEMOZOLOMIDE, "2015-01-20", "2015-06-01")])
    assert len(found) == 1 and "LOT-REGIMEN-WINDOW" in rule_ids(found[0])
    assert line_refs(found[0]) == ["MedicationStatement/cap", "MedicationStatement/tem"]


def test_an_agent_added_after_the_regimen_window_starts_a_new_line():
    found = lines([statement("cap", CAPECITABINE, "2015-01-01", "2015-06-01"),
                   statement("tem", TEMOZOLOMIDE, "2015-02-15", "2015-06-01")])
    assert [line_refs(x) for x in found] == [["MedicationStatement/cap"], ["MedicationStatement/tem"]]


def test_a_gap_longer_than_180_days_ends_a_line():
    found = lines([statement("eve-1", EVEROLIMUS, "2015-01-01", "2015-03-01"),
                   statement("eve-2", EVEROLIMUS, "2015-10-01", "2016-01-01")])
    assert len(found) == 2 and rule_ids(found[1])[0] == "LOT-GAP"


def test_the_same_agent_again_within_the_gap_continues_the_line():
    found = lines([statement("eve-1", EVEROLIMUS, "2015-01-01", "2015-03-01"),
                   statement("eve-2", EVEROLIMUS, "2015-05-01", "2016-01-01")])
    assert len(found) == 1 and "LOT-CONTINUATION" in rule_ids(found[0])
    assert found[0]["duration"]["days"] == 365


def test_ssa_escalation_and_switch_are_not_new_lines():
    found = lines([statement("oct-50", OCTREOTIDE, "2015-01-01", "2015-03-01", dose=50, every_h=8),
                   statement("oct-100", OCTREOTIDE, "2015-03-01", "2015-09-01", dose=100, every_h=8),
                   statement("lan", LANREOTIDE, "2015-09-01", "2016-09-01")])
    assert len(found) == 1 and found[0]["modality"] == "systemic"
    assert {"LOT-SSA-START", "LOT-SSA-ESCALATE", "LOT-SSA-CONTINUE"} <= set(rule_ids(found[0]))


def test_a_lower_ssa_dose_is_a_continuation_not_an_escalation():
    found = lines([statement("oct-100", OCTREOTIDE, "2015-01-01", "2015-03-01", dose=100, every_h=8),
                   statement("oct-50", OCTREOTIDE, "2015-03-01", "2015-09-01", dose=50, every_h=8)])
    assert "LOT-SSA-ESCALATE" not in rule_ids(found[0]) and "LOT-SSA-CONTINUE" in rule_ids(found[0])


def test_ssa_running_when_a_liver_directed_therapy_starts_is_its_backbone():
    found = lines([statement("oct", OCTREOTIDE, "2015-01-01", status="active"),
                   procedure("sirt", SIRT, "2015-06-01"),
                   statement("oct-later", OCTREOTIDE, "2015-07-01", status="active")])
    assert [x["modality"] for x in found] == ["systemic", "liver-directed"]
    assert line_refs(found[1], "backbone") == ["MedicationStatement/oct", "MedicationStatement/oct-later"]
    assert "LOT-SSA-BACKBONE" in rule_ids(found[1])
    assert found[0]["end"] == found[1]["start"]  # the SSA line ends where the next one starts


def test_ssa_resumed_after_a_recorded_stop_is_a_new_line():
    found = lines([statement("oct", OCTREOTIDE, "2015-01-01", "2015-03-01", status="stopped",
                             statusReason=stop_reason(PATIENT_DECISION)),
                   statement("oct-again", OCTREOTIDE, "2015-05-01", status="active")])
    assert len(found) == 2 and rule_ids(found[1])[0] == "LOT-SSA-RESTART"
    assert found[0]["endReason"]["code"] == "patient-decision"


def test_repeated_sessions_of_the_same_local_therapy_are_one_line():
    found = lines([procedure(f"tae-{n}", EMBOLIZATION, day) for n, day in
                   enumerate(["2015-01-01", "2015-03-01", "2015-05-01"])] + [procedure("sirt", SIRT, "2015-08-01")])
    assert [len(line_refs(x)) for x in found] == [3, 1]
    assert "LOT-LOCAL-REPEAT" in rule_ids(found[0]) and found[1]["modality"] == "liver-directed"
    assert found[0]["duration"]["days"] == 120 and found[0]["timeToNextTreatment"]["days"] == 212


def test_local_therapy_with_systemic_therapy_is_one_combined_line():
    found = lines([procedure("tae", EMBOLIZATION, "2015-01-01"),
                   request("fu", FLUOROURACIL, "2015-01-05", "2015-09-01", status="completed")])
    assert len(found) == 1 and found[0]["modality"] == "combined" and "LOT-COMBINED" in rule_ids(found[0])


def test_surgery_is_on_the_timeline_but_not_a_line():
    summary = summarise([patient(), procedure("resection", PANCREATECTOMY, "2014-06-01"),
                         statement("eve", EVEROLIMUS, "2015-01-01", "2015-06-01")])
    assert [s["reference"] for s in summary["surgeries"]] == ["Procedure/resection"]
    assert summary["surgeries"][0]["time"] == {"frame": "date", "low": "2014-06-01", "high": "2014-06-01",
                                               "precision": "day"}
    assert len(summary["lines"]) == 1 and summary["lines"][0]["number"] == 1


def test_supportive_agents_and_not_done_procedures_never_make_a_line():
    assert lines([statement("glc", GLUCOSE, "2015-01-01", "2015-01-05"),
                  statement("dzx", DIAZOXIDE, "2015-01-01", "2015-06-01"),
                  procedure("sirt", SIRT, None, status="not-done")]) == []


def test_a_line_without_end_date_is_open_ended_when_active():
    found = lines([statement("eve", EVEROLIMUS, "2015-01-01", status="active")])
    assert found[0]["ongoing"] and found[0]["end"] is None and found[0]["endReason"] is None
    assert "END-OPEN" in rule_ids(found[0]) and found[0]["duration"]["days"] is None


def test_a_completed_line_without_end_date_is_flagged():
    summary = summarise([patient(), statement("eve", EVEROLIMUS, "2015-01-01", status="completed")])
    assert summary["lines"][0]["end"] is None and not summary["lines"][0]["ongoing"]
    assert [f["code"] for f in summary["flags"]] == ["end-unknown"]


def test_imprecise_dates_that_leave_the_order_open_are_flagged_not_guessed():
    summary = summarise([patient(), statement("eve", EVEROLIMUS, "2015", "2015"), procedure("sirt", SIRT, "2015-06")])
    assert [f["code"] for f in summary["flags"]] == ["order-ambiguous"]
    assert summary["flags"][0]["lines"] == [1, 2]
    assert summary["lines"][0]["start"]["precision"] == "year"


def test_precise_dates_are_not_flagged():
    summary = summarise([patient(), statement("eve", EVEROLIMUS, "2015-01-10", "2015-03-01"),
                         procedure("sirt", SIRT, "2015-06-01")])
    assert summary["flags"] == []


def test_relations_order_events_without_dates():
    """'after X, delay unknown': the SIRT has no date at all, only a cqf-relativeDateTime to the everolimus start."""
    relative = {"url": "http://hl7.org/fhir/StructureDefinition/cqf-relativeDateTime", "extension": [
        {"url": "target", "valueReference": {"reference": "MedicationStatement/eve"}},
        {"url": "relationship", "valueCode": "after-end"}]}
    sirt = procedure("sirt", SIRT, None, extension=[relative])
    summary = summarise([patient(), sirt, statement("eve", EVEROLIMUS, "2015-01-01", "2015-06-01")])
    assert [x["modality"] for x in summary["lines"]] == ["systemic", "liver-directed"]
    assert summary["lines"][0]["timeToNextTreatment"]["minDays"] == 150
    assert summary["lines"][0]["timeToNextTreatment"]["days"] is None
    assert summary["flags"] == []


def test_end_reasons_from_codes_and_links():
    found = lines([
        statement("cap", CAPECITABINE, "2015-01-01", "2015-04-01", status="stopped", statusReason=stop_reason(NO_RESPONSE)),
        procedure("tae", EMBOLIZATION, "2015-05-01"),
        condition("bleed", "37372002", "2015-05-03",
                  extension=[{"url": "http://hl7.org/fhir/StructureDefinition/condition-dueTo",
                              "valueReference": {"reference": "Procedure/tae"}}]),
        statement("eve", EVEROLIMUS, "2015-07-01", "2015-12-01"),
        condition("new-lesion", LIVER_METASTASIS, "2015-11-15"),
        statement("oct", OCTREOTIDE, "2016-01-01", status="active"),
    ])
    assert [x["endReason"]["code"] if x["endReason"] else None for x in found] == [
        "progression", "toxicity", "progression", None]
    assert found[1]["outcomes"]["complications"][0]["reference"] == "Condition/bleed"


def test_death_ends_the_last_line():
    summary = summarise([patient(deceased="2016-02-01"), statement("oct", OCTREOTIDE, "2015-01-01", "2016-02-01")])
    assert summary["lines"][0]["endReason"]["code"] == "death"
    assert summary["death"]["time"]["low"] == "2016-02-01"


def test_text_names_an_agent_when_no_code_is_known():
    summary = summarise([patient(), statement("lar", None, "2015-01-01", text="Octreotide LAR 30 mg", status="active"),
                         statement("odd", None, "2015-01-01", text="Vitamin D"),
                         {"resourceType": "MedicationStatement", "id": "coded", "status": "completed",
                          "medicationCodeableConcept": concept(SCT, "0000", "octreotide"),
                          "effectiveDateTime": "2015-03-01"}])
    # 'octreotide' under an unknown code is still octreotide by its name; 'Vitamin D' is no agent we know.
    assert [line_refs(x) for x in summary["lines"]] == [["MedicationStatement/coded", "MedicationStatement/lar"]]
    assert sorted(f["code"] for f in summary["flags"]) == ["classified-by-text", "classified-by-text",
                                                           "unclassified-therapy"]


def test_aggregate_counts_and_medians_per_line_and_modality():
    one = summarise([patient(), procedure("tae", EMBOLIZATION, "2015-01-01"), procedure("sirt", SIRT, "2015-03-02")])
    two = summarise([patient(), procedure("tae", EMBOLIZATION, "2015-01-01"), procedure("sirt", SIRT, "2015-05-01")])
    groups = aggregate([one, two])["groups"]
    assert groups[0] == {"line": 1, "modality": "liver-directed", "count": 2, "medianDurationDays": 0.0,
                         "durationKnown": 2, "medianTimeToNextTreatmentDays": 90.0, "timeToNextTreatmentKnown": 2}
    assert groups[1]["count"] == 2 and groups[1]["medianTimeToNextTreatmentDays"] is None
