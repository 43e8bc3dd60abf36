"""The line rules are data: a caller's pack, or the indication the cancer selects, changes the reading."""
from __future__ import annotations

import copy

from corpus_builders import histories, to_fhir

from treatment_lines.engine import summarise
from treatment_lines.rules import load_rules

CORPUS = histories()


def names(summary: dict) -> list[str]:
    return [line["name"] for line in summary["lines"]]


def pack_with(**default) -> dict:
    pack = copy.deepcopy(load_rules())
    pack["lineRules"]["default"].update(default)
    return pack


def test_without_the_platinum_substitution_carboplatin_starts_a_new_line():
    resources = to_fhir(CORPUS["nsclc-02-cisplatin-to-carboplatin"])
    assert len(summarise(resources)["lines"]) == 1
    substitutions = [s for s in load_rules()["lineRules"]["default"]["substitutions"] if "cisplatin" not in s]
    lines = summarise(resources, pack_with(substitutions=substitutions))["lines"]
    assert [line["rulesFired"][0]["id"] for line in lines] == ["LOT-NEW-THERAPY", "LOT-NEW-THERAPY"]


def test_the_discontinuation_gap_is_read_from_the_pack():
    resources = to_fhir(CORPUS["nsclc-06-docetaxel-rechallenge-gap"])
    assert names(summarise(resources)) == ["docetaxel", "docetaxel"]
    assert names(summarise(resources, pack_with(gapDays=400))) == ["docetaxel"]


def test_the_cancer_selects_the_indication_table():
    history = copy.deepcopy(CORPUS["breast-01-act-then-tamoxifen"])
    assert summarise(to_fhir(history))["indication"] == "breast"
    history["conditions"] = [{"id": "other", "text": "Carcinoma of unknown primary", "onset": "2019-02-11"}]
    summary = summarise(to_fhir(history))
    # Under the default table the taxane after AC is a new line: the breast table is what makes AC-T one regimen.
    assert summary["indication"] == "default"
    assert names(summary) == ["cyclophosphamide, doxorubicin", "paclitaxel", "tamoxifen"]
