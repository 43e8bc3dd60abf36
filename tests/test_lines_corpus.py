"""The corpus of realistic histories (tests/data/lines/): each reads as its source's regimen says it should."""
from __future__ import annotations

import pytest
from corpus_builders import histories, to_fhir

from mappings.fhir_validation import resource_issues
from treatment_lines.engine import summarise
from treatment_lines.fhir_output import lines_to_fhir

CORPUS = histories()


def test_the_corpus_spans_at_least_24_histories_and_6_cancers():
    assert len(CORPUS) >= 24
    cancers = {summarise(to_fhir(h))["indication"] for h in CORPUS.values()}
    assert {"nsclc", "breast", "colorectal", "prostate", "lymphoma", "pancreas", "net"} <= cancers
    assert all(h["source"] and h["exercises"] and h["expected"]["lines"] for h in CORPUS.values())


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_history_reads_as_expected(name):
    history = CORPUS[name]
    summary = summarise(to_fhir(history))
    expected = history["expected"]
    assert [line["name"] for line in summary["lines"]] == [e["name"] for e in expected["lines"]]
    for line, want in zip(summary["lines"], expected["lines"]):
        fired = [r["id"] for r in line["rulesFired"]]
        assert fired[0] == want["opens"], (line["number"], fired)
        assert set(want.get("rules", [])) <= set(fired), (line["number"], fired)
        if "modality" in want:
            assert line["modality"] == want["modality"]
        if "endReason" in want:
            assert (line["endReason"] or {}).get("code") == want["endReason"], line["endReason"]
        if "maintenance" in want:
            assert line["maintenance"] == want["maintenance"]
        if "end" in want:  # the line's end date (e.g. where a depot's action ends)
            assert (line["end"] or {}).get("low") == want["end"], line["end"]
        if "cancer" in want:
            assert line["cancer"] == f"Condition/{want['cancer']}"
    if "flags" in expected:
        assert sorted({f["code"] for f in summary["flags"]} - {"end-unknown"}) == sorted(set(expected["flags"]))
    if "cancers" in expected:
        assert [c["indication"] for c in summary["cancers"]] == expected["cancers"]


@pytest.mark.parametrize("name", sorted(CORPUS)[:6])
def test_corpus_lines_are_valid_episodes_of_care(name):
    summary = summarise(to_fhir(CORPUS[name]))
    for resource in lines_to_fhir(summary, "Patient/corpus"):
        assert resource_issues(resource) == []
