"""The seed cases map to their reviewed golden Bundles, identically every time."""
from __future__ import annotations

import copy
import json

from case_files import DATA, SEED_CASES, load_case
from regen_golden import golden_bundle
import pytest

from mappings.case_bundle import case_to_bundle


@pytest.mark.parametrize("name", SEED_CASES)
def test_seed_case_maps_to_golden_bundle(name):
    expected = json.loads((DATA / name / "expected-bundle.json").read_text(encoding="utf-8"))
    assert golden_bundle(load_case(name)) == expected


def _without_timestamps(bundle: dict) -> str:
    bundle = copy.deepcopy(bundle)
    for entry in bundle["entry"]:
        entry["resource"].pop("recorded", None)
        entry["resource"].get("meta", {}).pop("lastUpdated", None)
    return json.dumps(bundle, sort_keys=False)


def test_mapping_twice_gives_byte_identical_resources_apart_from_timestamps(seed_case):
    _, case = seed_case
    first, second = case_to_bundle(case), case_to_bundle(copy.deepcopy(case))
    assert _without_timestamps(first) == _without_timestamps(second)


def test_every_resource_carries_a_deterministic_identifier_and_provenance_names_its_fact(seed_case):
    _, case = seed_case
    bundle = case_to_bundle(case)
    provenance = bundle["entry"][-1]["resource"]
    mapped = bundle["entry"][:-1]
    assert provenance["resourceType"] == "Provenance"
    assert [t["reference"] for t in provenance["target"]] == [e["fullUrl"] for e in mapped]
    for entry, target in zip(mapped, provenance["target"]):
        assert entry["resource"]["identifier"][0] == target["identifier"]
        assert entry["resource"]["identifier"][0]["value"].startswith(case["caseId"] + "/")
        assert entry["request"]["method"] == "PUT" and "?identifier=" in entry["request"]["url"]
    assert provenance["entity"][0]["what"]["identifier"]["value"] == case["caseId"]


def test_every_mapped_resource_is_valid_r4(seed_case):
    from mappings.fhir_validation import resource_issues

    _, case = seed_case
    for n, entry in enumerate(case_to_bundle(case)["entry"]):
        assert resource_issues(entry["resource"], f"entry[{n}]") == []
