"""The summary never depends on the order the resources arrive in."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from lines_builders import case1_plain, seed_resources
from treatment_lines.engine import summarise
from treatment_lines.fhir_output import lines_to_fhir

HISTORIES = {name: resources for name, resources in (
    ("case1-vipoma", seed_resources("case1-vipoma")),
    ("case2-insulinoma", seed_resources("case2-insulinoma")),
    ("case1-plain", case1_plain()),
)}
EXPECTED = {name: summarise(resources) for name, resources in HISTORIES.items()}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(HISTORIES)), data=st.data())
def test_shuffling_resources_never_changes_the_summary(name, data):
    shuffled = data.draw(st.permutations(HISTORIES[name]))
    summary = summarise(list(shuffled))
    assert summary == EXPECTED[name]
    assert lines_to_fhir(summary, "Patient/x") == lines_to_fhir(EXPECTED[name], "Patient/x")
