"""The compiled case-schema check (fastjsonschema) only decides whether jsonschema must run: it may be stricter
than jsonschema, never looser, it must pass the seed cases (or it saves nothing), and it must not touch the
document (fastjsonschema fills in schema defaults unless told not to)."""
from __future__ import annotations

import copy
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from case_files import SEED_CASES, load_case
from mappings import case_validation

SEEDS = [load_case(name) for name in SEED_CASES]
# Values on the edges where validators disagree: bool vs int, 1.0 vs 1, empty containers, enum look-alikes.
EDGES = st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, -1, 1.0, 2.5, 10**9, "", "completed", "x" * 300]),
                  st.integers(-10**6, 10**6), st.text(max_size=12), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.sampled_from(["id", "text", "value", "unit", "extra"]), st.integers(), max_size=2))


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


def _mutate(document: dict, data) -> dict:
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(document))
        if not paths:
            break
        *head, last = data.draw(st.sampled_from(paths))
        parent = document
        for part in head:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "add-key"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif action == "add-key" and isinstance(parent[last], dict):
            parent[last][data.draw(st.sampled_from(["extra", "id", "text", "status", "value"]))] = data.draw(EDGES)
        else:
            parent[last] = data.draw(EDGES)
    return document


def test_compiled_check_passes_both_seed_cases_and_leaves_them_untouched():
    for seed in SEEDS:
        document = copy.deepcopy(seed)
        assert case_validation._certainly_valid()(document)
        assert document == seed


def test_a_procedure_without_status_keeps_no_status_after_the_check():
    # The schema gives procedures "default": "completed"; the mapping, not the validator, decides what that means.
    seed = copy.deepcopy(SEEDS[0])
    procedure = seed["procedures"][0]
    procedure.pop("status", None)
    case_validation.check_case(seed)
    assert "status" not in procedure


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=not os.environ.get("FUZZ_RANDOM"))  # CI replays fixed examples; FUZZ_RANDOM=1 explores
@given(data=st.data())
def test_compiled_check_never_accepts_what_jsonschema_rejects(data):
    document = _mutate(data.draw(st.sampled_from(SEEDS)), data)
    if case_validation._certainly_valid()(document):
        assert not list(case_validation._validator().iter_errors(document))
