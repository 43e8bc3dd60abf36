"""Finding and rewriting the references inside a resource, and the patient compartment it belongs to."""
from __future__ import annotations

from typing import Callable, Iterator

from mappings.references import parse_reference

# Top-level elements that put a resource in a patient's compartment, in the order they are looked at.
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary", "individual")


def iter_references(node: object, path: str) -> Iterator[tuple[str, str]]:
    """(path, reference string) of every Reference.reference inside a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield f"{path}.reference", value
            else:
                yield from iter_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from iter_references(value, f"{path}[{i}]")


def rewrite_references(node: object, mapping: Callable[[str], str]) -> object:
    """A copy of node with every Reference.reference passed through mapping."""
    if isinstance(node, dict):
        return {k: (mapping(v) if k == "reference" and isinstance(v, str) else rewrite_references(v, mapping))
                for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_references(v, mapping) for v in node]
    return node


def patient_of(resource: dict) -> str | None:
    """The id of the patient whose compartment holds this resource, if any."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    candidates = [resource.get(k) for k in PATIENT_ELEMENTS]
    if resource.get("resourceType") == "Provenance":
        candidates += resource.get("target", [])
    for value in candidates:
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                rtype, rid = parse_reference(ref["reference"])
                if rtype == "Patient":
                    return rid
    return None
