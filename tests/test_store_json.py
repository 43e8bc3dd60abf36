"""The stored JSON text of a resource (store.writes.dumps, orjson with json.dumps behind it) is the text
json.dumps(ensure_ascii=False, separators=(",", ":")) writes, including where orjson alone would differ."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from store.writes import dumps

DATA = Path(__file__).resolve().parent / "data"


def _reference(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _documents() -> list[object]:
    found: list[object] = []
    for path in sorted(DATA.rglob("*.ndjson")):
        found += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for path in sorted(DATA.rglob("*.json")):
        found.append(json.loads(path.read_text(encoding="utf-8")))
    return found


def test_the_test_data_is_stored_as_json_dumps_writes_it():
    documents = _documents()
    assert len(documents) > 100
    assert [d for d in documents if dumps(d) != _reference(d)] == []


@pytest.mark.parametrize("resource", [
    {"resourceType": "Observation", "valueQuantity": {"value": 2**70}},                     # beyond 64 bits: orjson raises
    {"resourceType": "Observation", "valueQuantity": {"value": float("nan")}},              # orjson would write null
    {"resourceType": "Observation", "valueQuantity": {"value": float("inf")}},
    {"resourceType": "Patient", "name": [{"given": ["A", None]}], "_x": [None, {"id": "1"}]},  # nulls inside arrays
    {"resourceType": "Patient", "name": [{"text": "\ud800 lone surrogate"}]},                 # orjson raises
    {"resourceType": "Patient", "name": [{"text": "Müller \u2028 \x1f \"q\" \\ null"}]},     # escapes, non-ASCII kept
])
def test_what_orjson_writes_differently_is_written_by_json_dumps(resource):
    assert dumps(resource) == _reference(resource)
