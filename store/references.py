"""Finding and rewriting the references inside a resource, and the patient compartment it belongs to."""
from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, overload

from mappings.references import parse_reference

# Top-level elements that put a resource in a patient's compartment, in the order they are looked at.
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary", "individual")


class Reference(NamedTuple):
    path: str                      # where it is, for messages (Bundle.entry[2].resource.subject.reference)
    value: str                     # the reference as written
    keys: tuple[str | int, ...]    # the keys from the resource's root to the Reference holding it


def replace_references(resource: dict, changes: list[tuple[tuple[str | int, ...], str]]) -> dict:
    """A copy of resource with the Reference at each keys set to a new value; only the objects on those paths
    are copied, the rest is shared with resource (which is left as it was)."""
    copy = dict(resource)
    for keys, value in changes:
        node: Any = copy
        source: Any = resource
        for key in keys:
            child = source[key]
            if node[key] is child:
                node[key] = dict(child) if isinstance(child, dict) else list(child)
            node, source = node[key], child
        node["reference"] = value
    return copy


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


@overload
def rewrite_references(node: dict, mapping: Callable[[str], str]) -> dict: ...
@overload
def rewrite_references(node: object, mapping: Callable[[str], str]) -> object: ...
def rewrite_references(node: object, mapping: Callable[[str], str]) -> object:
    """A copy of node with every Reference.reference passed through mapping (a resource gives a resource)."""
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
