"""A long-acting depot covers the time after its last recorded dose: the discontinuation gap and the line's end
count from the end of its action (mappings/drugs/depots.csv, durations from the product labels)."""
from __future__ import annotations

import csv
from pathlib import Path

from lines_builders import LANREOTIDE, RXN, administration, patient

from treatment_lines.engine import summarise

DRUGS = Path(__file__).resolve().parent.parent / "mappings" / "drugs"
FULVESTRANT = "282357"


def _rows(name: str) -> list[dict]:
    with (DRUGS / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_depot_row_names_a_product_or_agent_of_the_lexicon_and_a_label():
    products = {r["code"]: r["agents"] for r in _rows("products.csv")}
    agents = {r["agent"] for r in _rows("agents.csv")}
    for row in _rows("depots.csv"):
        assert row["agent"] in agents and float(row["action_days"]) > 0 and row["source"], row
        if row["match"] == "product":
            assert products[row["value"]] == row["agent"], row


def test_the_gap_counts_from_the_end_of_the_depots_action():
    # 206 days between injections: more than the 180-day gap after the injection, 178 days after its 28 days of action.
    summary = summarise([patient(), administration("lan-1", LANREOTIDE, "2015-01-05", 120),
                         administration("lan-2", LANREOTIDE, "2015-07-30", 120)])
    assert [(line["name"], line["rulesFired"][0]["id"]) for line in summary["lines"]] == [("lanreotide", "LOT-SSA-START")]


def test_a_depot_line_ends_when_the_last_dose_stops_acting():
    summary = summarise([patient(), *(administration(f"fulv-{n}", FULVESTRANT, day, 500) for n, day in
                                      enumerate(["2020-01-06", "2020-01-20", "2020-02-03", "2020-03-02"]))])
    (line,) = summary["lines"]
    assert (line["end"]["low"], line["duration"]["days"]) == ("2020-03-30", 84)


def test_an_immediate_release_injection_acts_for_no_depot_interval():
    octreotide_ir = {"resourceType": "MedicationAdministration", "id": "oct-ir", "status": "completed",
                     "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2020-01-06",
                     "medicationCodeableConcept": {"coding": [{"system": RXN, "code": "312070"}]}}
    lar = octreotide_ir | {"id": "oct-lar", "effectiveDateTime": "2020-06-01",
                           "medicationCodeableConcept": {"text": "Sandostatin LAR Depot 30 mg"}}
    ir_only, lar_only = summarise([patient(), octreotide_ir]), summarise([patient(), lar])
    assert ir_only["lines"][0]["end"]["low"] == "2020-01-06"
    assert lar_only["lines"][0]["end"]["low"] == "2020-06-29"
