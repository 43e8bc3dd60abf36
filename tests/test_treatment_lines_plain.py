"""The same history posted as plain FHIR (real dates, requests, administrations) gives the same lines."""
from __future__ import annotations

from lines_builders import case1_plain, seed_resources
from treatment_lines.engine import summarise


def shape(summary: dict) -> list[tuple]:
    return [(line["number"], line["modality"], line["classes"]) for line in summary["lines"]]


def test_plain_case1_agrees_with_the_case_format():
    plain, seed = summarise(case1_plain()), summarise(seed_resources("case1-vipoma"))
    assert shape(plain) == shape(seed) == [
        (1, "combined", ["chemotherapy", "embolization"]),
        (2, "systemic", ["somatostatin-analogue"]),
        (3, "liver-directed", ["radioembolization"]),
        (4, "systemic", ["somatostatin-analogue"]),
    ]
    assert [s["reference"] for s in plain["surgeries"]] == ["Procedure/pancreatectomy"]
    assert plain["flags"] == []


def test_plain_case1_measures_what_dates_allow():
    lines = summarise(case1_plain())["lines"]
    assert lines[0]["start"] == {"frame": "date", "low": "2010-06-01", "high": "2010-06-01", "precision": "day"}
    assert lines[0]["duration"]["days"] == 273            # 2010-06-01 to 2011-03-01
    assert lines[0]["timeToNextTreatment"]["days"] == 761  # to the first octreotide, 2012-07-01
    # One treatment, one item: the order is told by its injections (LOT-DUPLICATE): eight before SIRT, the
    # first carrying the order's reference; the last two run on under SIRT.
    octreotide = [c for c in lines[1]["components"] if c["role"] == "line"]
    assert [c["reference"] for c in octreotide] == [f"MedicationAdministration/lar-{n}" for n in range(8)]
    assert octreotide[0]["alsoRecordedAs"] == ["MedicationRequest/octreotide-lar"]
    assert [c["reference"] for c in lines[2]["components"] if c["role"] == "backbone"] == [
        "MedicationAdministration/lar-7", "MedicationAdministration/lar-8"]
    assert lines[3]["rulesFired"][0]["id"] == "LOT-SSA-RESTART" and lines[3]["ongoing"]
    assert [line["endReason"]["code"] for line in lines[:3]] == ["completed", "symptom-recurrence", "completed"]
