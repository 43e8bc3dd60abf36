"""The drug lexicon recognises agents by ingredient code, clinical/branded drug code, name, synonym and brand."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from lines_builders import RXN, patient

import treatment_lines
from treatment_lines.lexicon import load_lexicon

DRUGS = Path(__file__).resolve().parent.parent / "mappings" / "drugs"


@pytest.mark.parametrize(("concept", "agents", "how"), [
    ({"coding": [{"system": RXN, "code": "40048"}]}, ("carboplatin",), "ingredient-code"),
    ({"coding": [{"system": RXN, "code": "1736854", "display": "Cisplatin 50 MG Injection"}]}, ("cisplatin",), "product-code"),
    ({"coding": [{"system": RXN, "code": "583214"}]}, ("paclitaxel",), "product-code"),
    ({"text": "CARBOplatin AUC 5"}, ("carboplatin",), "text"),
    ({"text": "Sandostatin LAR 30 mg"}, ("octreotide",), "text"),
    ({"text": "carboplatin/paclitaxel"}, ("carboplatin", "paclitaxel"), "text"),
    ({"text": "Abraxane 125 mg/m2"}, ("nab-paclitaxel",), "text"),
    ({"text": "177Lu-PSMA-617"}, ("lutetium Lu 177 vipivotide tetraxetan",), "text"),
    ({"coding": [{"system": RXN, "code": "999999999", "display": "Cisplatin 50 MG Injection"}]}, ("cisplatin",), "text"),
])
def test_agents_are_recognised_by_ingredient(concept, agents, how):
    found = load_lexicon().recognise(concept)
    assert found is not None and found.agents == agents and found.how == how


@pytest.mark.parametrize("text", ["Vitamin D 1000 IU", "Platinum-based chemotherapy (agent not named)", "5-FUture trial drug"])
def test_unknown_agents_are_never_guessed(text):
    assert load_lexicon().recognise({"text": text}) is None


def test_every_lexicon_row_has_a_class_the_rule_pack_knows_and_a_source():
    from treatment_lines.rules import load_rules
    classes = load_rules()["classes"]
    with (DRUGS / "agents.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 90
    for row in rows:
        assert row["class"] in classes and row["source"], row["agent"]
        assert all(code.isdigit() for code in row["rxnorm"].split(";") if code), row["agent"]


def test_supportive_and_bone_directed_agents_never_open_a_line():
    def given(rid, code, when):
        return {"resourceType": "MedicationAdministration", "id": rid, "status": "completed", "effectiveDateTime": when,
                "medicationCodeableConcept": {"coding": [{"system": RXN, "code": code}]}}
    resources = [patient(), given("zol", "77655", "2020-01-06"), given("deno", "993449", "2020-02-03"),
                 given("ondansetron", "26225", "2020-03-02"), given("filgrastim", "68442", "2020-03-03")]
    assert treatment_lines.summarise(resources)["lines"] == []
    resources.append(given("docetaxel", "72962", "2020-03-02"))
    lines = treatment_lines.summarise(resources)["lines"]
    assert [line["name"] for line in lines] == ["docetaxel"]
    # Supportive care accompanies the line it is given with (the same day or later), never one not yet started.
    assert sorted(c["reference"] for c in lines[0]["components"] if c["role"] == "supportive") == [
        "MedicationAdministration/filgrastim", "MedicationAdministration/ondansetron"]
