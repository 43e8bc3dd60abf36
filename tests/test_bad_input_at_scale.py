"""Hypothesis-generated case documents and bundles, valid and broken, through the API: never a 500, every
rejection an OperationOutcome, and nothing partially written."""
from __future__ import annotations

import copy
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from case_files import load_case
from gateway_setup import authorised_client
from mappings.case_bundle import case_to_bundle
from store_state import snapshot

SEED = load_case("case2-insulinoma")
SEED_BUNDLE = case_to_bundle(load_case("case1-vipoma"))
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False), st.text(max_size=20),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _mutate(document: dict, data) -> dict:
    document = copy.deepcopy(document)
    paths = [p for p in _paths(document) if p]
    for _ in range(data.draw(st.integers(0, 4))):
        path = data.draw(st.sampled_from(paths))
        parent = document
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = data.draw(st.sampled_from(["replace", "delete"]))
            if action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(JUNK)
        except (KeyError, IndexError, TypeError):
            continue
    return document


def _check(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        body = response.get_json(force=True)
        assert body["resourceType"] == "OperationOutcome" and body["issue"]


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=not os.environ.get("FUZZ_RANDOM"))  # CI replays fixed examples; FUZZ_RANDOM=1 explores
@given(data=st.data())
def test_generated_case_documents_never_cause_a_500(app, data):
    client = authorised_client(app)
    document = _mutate(SEED, data)
    _check(client.post("/cases", data=json.dumps(document), content_type="application/json"))
    _check(client.post("/cases/$validate", data=json.dumps(document), content_type="application/json"))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=not os.environ.get("FUZZ_RANDOM"))  # CI replays fixed examples; FUZZ_RANDOM=1 explores
@given(data=st.data())
def test_generated_bundles_are_applied_whole_or_not_at_all(app, data):
    client = authorised_client(app)
    bundle = _mutate(SEED_BUNDLE, data)
    before = snapshot(app.extensions["store"])
    response = client.post("/Bundle", data=json.dumps(bundle), content_type="application/fhir+json")
    _check(response)
    if response.status_code >= 400:
        assert snapshot(app.extensions["store"]) == before
    elif isinstance(bundle, dict) and bundle.get("type") == "transaction":
        statuses = [e["response"]["status"] for e in response.get_json()["entry"]]
        assert all(s.startswith(("200", "201")) for s in statuses)
