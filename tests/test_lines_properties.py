"""Properties of the reading over the corpus: order of resources, duplicate records and how an agent is coded
never change the lines."""
from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from corpus_builders import (
    RXN,
    clinical_drug_codes,
    histories,
    ingredient_codes,
    to_fhir,
)

from treatment_lines.engine import summarise

CORPUS = {name: to_fhir(history) for name, history in histories().items()}
EXPECTED = {name: summarise(resources) for name, resources in CORPUS.items()}
AGENT_BY_CODE = {code: agent for agent, code in ingredient_codes().items()}
SCD = clinical_drug_codes()


def reading(summary: dict) -> list[tuple]:
    return [(line["name"], line["modality"], line["cancer"]) for line in summary["lines"]]


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(CORPUS)), data=st.data())
def test_shuffling_resources_never_changes_the_summary(name, data):
    shuffled = data.draw(st.permutations(CORPUS[name]))
    assert summarise(list(shuffled)) == EXPECTED[name]


def _first_coded_series(resources: list[dict]) -> list[dict]:
    """The administrations of the first agent given as a series of coded MedicationAdministrations."""
    by_agent: dict[str, list[dict]] = {}
    for r in resources:
        if r["resourceType"] == "MedicationAdministration" and "medicationCodeableConcept" in r:
            codings = r["medicationCodeableConcept"].get("coding") or []
            if codings and codings[0]["code"] in AGENT_BY_CODE:
                by_agent.setdefault(r["id"].rsplit("-", 1)[0], []).append(r)
    return next(iter(by_agent.values()), [])


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_duplicate_statement_of_a_series_changes_no_line(name):
    resources = copy.deepcopy(CORPUS[name])
    series = _first_coded_series(resources)
    if not series:
        pytest.skip("no coded administration series in this history")
    dates = sorted(r["effectiveDateTime"] for r in series)
    resources.append({"resourceType": "MedicationStatement", "id": "duplicate-record", "status": "completed",
                      "subject": {"reference": "Patient/corpus"},
                      "medicationCodeableConcept": copy.deepcopy(series[0]["medicationCodeableConcept"]),
                      "effectivePeriod": {"start": dates[0], "end": dates[-1]}})
    summary = summarise(resources)
    assert reading(summary) == reading(EXPECTED[name])
    assert any("duplicate-record" in line["references"][0] or "MedicationStatement/duplicate-record" in line["references"]
               for line in summary["lines"])


def _recode(resources: list[dict], how: str) -> int:
    changed = 0
    for r in resources:
        concept = r.get("medicationCodeableConcept")
        codings = (concept or {}).get("coding") or []
        if not codings or codings[0].get("system") != RXN or codings[0]["code"] not in AGENT_BY_CODE:
            continue
        agent = AGENT_BY_CODE[codings[0]["code"]]
        if how == "scd" and agent in SCD:
            code, display = SCD[agent]
            r["medicationCodeableConcept"] = {"coding": [{"system": RXN, "code": code, "display": display}]}
        elif how == "text":
            r["medicationCodeableConcept"] = {"text": agent.upper()}
        else:
            continue
        changed += 1
    return changed


@pytest.mark.parametrize("how", ["scd", "text"])
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_an_ingredient_code_read_as_clinical_drug_or_text_gives_the_same_lines(name, how):
    resources = copy.deepcopy(CORPUS[name])
    if not _recode(resources, how):
        pytest.skip("no ingredient-coded medication in this history")
    summary = summarise(resources)
    assert reading(summary) == reading(EXPECTED[name])
    assert [[r["id"] for r in line["rulesFired"]] for line in summary["lines"]] == [
        [r["id"] for r in line["rulesFired"]] for line in EXPECTED[name]["lines"]]
