"""Golden line summaries of the two seed cases, read from their golden FHIR bundles, and their FHIR output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lines_builders import seed_resources

from mappings.fhir_validation import resource_issues
from treatment_lines.engine import summarise
from treatment_lines.fhir_output import lines_to_fhir
from treatment_lines.resources import resource_key
from treatment_lines.rules import load_rules

DATA = Path(__file__).parent / "data"
CASES = ["case1-vipoma", "case2-insulinoma"]


def fact(reference: str, case: str) -> str:
    """The case fact behind a urn:uuid reference, to write readable assertions."""
    for resource in seed_resources(case):
        if resource_key(resource) == reference:
            return resource["identifier"][0]["value"].split("/", 1)[1]
    return reference


@pytest.mark.parametrize("case", CASES)
def test_summary_matches_golden(case):
    expected = json.loads((DATA / case / "expected-lines.json").read_text(encoding="utf-8"))
    assert summarise(seed_resources(case)) == expected


def _reading(case: str) -> list[tuple]:
    summary = summarise(seed_resources(case))
    return [(line["modality"], sorted(fact(c["reference"], case) for c in line["components"] if c["role"] == "line"),
             line["endReason"]["code"] if line["endReason"] else None) for line in summary["lines"]]


def test_case1_reads_as_the_oncologist_does():
    assert _reading("case1-vipoma") == [
        ("combined", ["chemo-5fu-stz/fluorouracil", "chemo-5fu-stz/streptozocin", "tae-series"], "completed"),
        ("systemic", ["octreotide-lar/octreotide"], "symptom-recurrence"),
        ("liver-directed", ["sirt-right-lobe"], "completed"),
        ("systemic", ["octreotide-resumed/octreotide"], None),
    ]
    summary = summarise(seed_resources("case1-vipoma"))
    line1, line2, line3, line4 = summary["lines"]
    assert line1["outcomes"]["syndromeControl"]["value"] == "complete"
    assert line1["outcomes"]["bestRadiologicalResponse"]["category"] == "stable-disease"
    assert line2["outcomes"]["syndromeControl"]["value"] == "partial"
    assert line3["outcomes"]["syndromeControl"]["duration"] == {"value": 2, "unit": "a"}
    assert line3["outcomes"]["biomarkerResponse"]["value"] == "normalised"
    assert line3["outcomes"]["bestRadiologicalResponse"]["status"] == "stable"
    assert [fact(c["reference"], "case1-vipoma") for c in line3["components"] if c["role"] == "backbone"] == [
        "octreotide-lar/octreotide"]
    assert [r["id"] for r in line4["rulesFired"]][0] == "LOT-SSA-RESTART"
    assert line4["ongoing"] and line4["end"] is None
    assert [fact(s["reference"], "case1-vipoma") for s in summary["surgeries"]] == ["distal-pancreatectomy"]
    assert summary["death"] is None and summary["criticalEvents"] == []


def test_case2_reads_as_the_oncologist_does():
    case = "case2-insulinoma"
    assert _reading(case) == [
        ("systemic", ["chemo-stz-5fu/fluorouracil", "chemo-stz-5fu/streptozocin"], "progression"),
        ("systemic", ["octreotide-sc/octreotide/dose-1", "octreotide-sc/octreotide/dose-2"], "symptom-recurrence"),
        ("liver-directed", ["tae-left-hepatic-artery", "tae-series"], "no-response"),
        ("liver-directed", ["sirt-right-hepatic-artery"], "death"),
    ]
    summary = summarise(seed_resources(case))
    line2, line3, line4 = summary["lines"][1:]
    assert "LOT-SSA-ESCALATE" in [r["id"] for r in line2["rulesFired"]]
    assert line2["outcomes"]["syndromeControl"]["duration"] == {"value": 1, "unit": "a"}
    roles3 = {fact(c["reference"], case): c["role"] for c in line3["components"]}
    assert roles3["octreotide-iv/octreotide"] == "backbone" and roles3["glucose-iv/glucose"] == "supportive"
    assert roles3["octreotide-sc/octreotide/dose-2"] == "backbone"  # the escalated dose runs on under the TAE
    assert line2["duration"]["minDays"] == 364 and line2["end"] == line3["start"]
    assert line3["outcomes"]["syndromeControl"]["value"] == "partial"  # short-lived control before the failure
    assert [fact(c["reference"], case) for c in line3["outcomes"]["complications"]] == ["gi-bleeding"]
    assert line3["timeToNextTreatment"]["minDays"] == 14
    backbone4 = sorted(fact(c["reference"], case) for c in line4["components"] if c["role"] == "backbone")
    assert backbone4 == ["octreotide-iv/octreotide", "octreotide-lar/octreotide", "octreotide-sc-after-sirt/octreotide"]
    assert line4["outcomes"]["bestRadiologicalResponse"]["category"] == "complete-response"
    assert line4["outcomes"]["syndromeControl"]["value"] == "complete"
    assert sorted(fact(s["reference"], case) for s in summary["surgeries"]) == [
        "caudal-pancreatectomy", "liver-resection-iii", "liver-resection-ivb"]
    assert sorted(fact(e["reference"], case) for e in summary["criticalEvents"]) == [
        "icu-admission", "thromboembolic-femoral", "thromboembolic-pe", "thromboembolic-stroke"]
    assert summary["death"]["lastLineResponse"] == {"line": 4, "category": "complete-response"}


@pytest.mark.parametrize("case", CASES)
def test_every_line_is_a_valid_episode_of_care(case):
    summary = summarise(seed_resources(case))
    resources = lines_to_fhir(summary, "Patient/seed")
    assert len(resources) == len(summary["lines"])
    for resource in resources:
        assert resource_issues(resource) == []
        assert resource["type"][0]["coding"][0]["code"] == "C133518"
        assert {"url": "https://oncology-gateway.example.org/fhir/StructureDefinition/line-rule-pack",
                "valueString": load_rules()["version"]} in resource["extension"]
    assert len({r["id"] for r in resources}) == len(resources)
    assert lines_to_fhir(summary, "Patient/seed") == resources


def test_rule_pack_version_is_echoed_and_a_callers_pack_is_honoured():
    pack = json.loads(json.dumps(load_rules()))
    pack["version"] = "treatment-lines-test"
    pack["lineRules"]["default"]["gapDays"] = 10_000
    summary = summarise(seed_resources("case1-vipoma"), pack)
    assert summary["rulePackVersion"] == "treatment-lines-test"
    assert summarise(seed_resources("case1-vipoma"))["rulePackVersion"] == load_rules()["version"]
