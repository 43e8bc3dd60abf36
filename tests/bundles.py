"""Picking entries of a Bundle by what they are (resource type, case fact), never by position: a mapping change
that reorders entries must not silently retarget a test."""
from __future__ import annotations


def fact_index(bundle: dict, fact: str) -> int:
    """Index of the entry mapped from case fact `fact` (its identifier is `<caseId>/<fact>`)."""
    found = [i for i, e in enumerate(bundle["entry"])
             if any(ident.get("value", "").split("/", 1)[-1] == fact for ident in e["resource"].get("identifier") or [])]
    assert len(found) == 1, f"{len(found)} entries carry fact {fact!r}"
    return found[0]


def fact_entry(bundle: dict, fact: str) -> dict:
    return bundle["entry"][fact_index(bundle, fact)]


def stored_patient_id(answer: dict) -> str:
    """The local Patient id from a transaction-response (its location) or a mapped Bundle (its fullUrl)."""
    for entry in answer["entry"]:
        location = (entry.get("response") or {}).get("location", "")
        if location.startswith("Patient/"):
            return location.split("/")[1]
        if entry.get("fullUrl", "").startswith("Patient/"):
            return entry["fullUrl"].split("/")[1]
    raise AssertionError("no Patient entry in the Bundle")
