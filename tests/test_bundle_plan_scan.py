"""store/bundle_plan.py `_scan`, the one walk of each planned resource, finds exactly the nulls of object members
(paths spelled as before) and every Reference.reference, in document order, with the keys that lead to it."""
from __future__ import annotations

import json
import random
from collections.abc import Iterator

from case_files import DATA
from store.bundle_plan import _scan
from store.references import iter_references

from bench import ingest as bench_ingest


def _resources() -> list[object]:
    rng = random.Random(3)
    bundles = [json.loads(bench_ingest.synthea_bundle(rng, visits=3)) for _ in range(2)]
    resources: list[object] = [e["resource"] for b in bundles for e in b["entry"]]
    resources += [json.loads(line) for path in sorted((DATA / "bulk" / "synthea-4-patients").glob("*.ndjson"))
                  for line in path.read_text(encoding="utf-8").splitlines()[:5] if line.strip()]
    resources += [
        {"resourceType": "Observation", "status": None, "code": {"coding": [{"system": None}, None]}, "subject": {"reference": None}},
        {"resourceType": "Observation", "extension": [[{"reference": "Patient/1", "x": None}], [[{"reference": "Patient/2"}]]],
         "_status": None, "component": [{"valueReference": {"reference": 7}}, {"valueReference": {"reference": "urn:uuid:a"}}]},
        [{"reference": "Patient/3"}, None, [{"a": None}]],
        "not an object",
    ]
    return resources


def _nulls(node: object, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                yield f"{path}.{key}"
            else:
                yield from _nulls(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nulls(value, f"{path}[{i}]")


def _at(node: object, keys: tuple) -> object:
    for key in keys:
        node = node[key]  # type: ignore[index]
    return node


def test_scan_finds_every_member_null_and_every_reference_in_document_order():
    resources = _resources()
    for resource in resources:
        refs: list = []
        issues = _scan(resource, "Bundle.entry[4].resource", refs)
        assert [i.path for i in issues] == list(_nulls(resource, "Bundle.entry[4].resource"))
        assert all(i.code == "structure" and "null is not allowed" in i.message for i in issues)
        assert [(r.path, r.value) for r in refs] == list(iter_references(resource, "Bundle.entry[4].resource"))
        assert all(_at(resource, r.keys)["reference"] == r.value for r in refs)
    assert sum(len(list(iter_references(r, "$"))) for r in resources) > 100
