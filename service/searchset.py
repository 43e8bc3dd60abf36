"""Search results as searchset Bundles: matches and includes, total, self/next links with a keyset cursor,
_summary and _elements applied (and marked SUBSETTED), lenient-handling warnings as an OperationOutcome entry."""
from __future__ import annotations

import json
from functools import cache
from urllib.parse import urlencode

from sqlalchemy import Engine

from mappings.errors import InputError, Issue
from mappings.fhir_validation import model_class
from service.outcome import operation_outcome
from service.paging import base_url
from store import db
from store.references import patient_of
from store.search import search

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
# The elements every subset keeps (search.html#elements: mandatory and modifier elements are always returned).
ALWAYS_KEPT = ("resourceType", "id", "meta")
SUMMARY_TEXT_KEEP = ("resourceType", "id", "meta", "text")


def search_bundle(engine: Engine, rtype: str, params: list[tuple[str, str]], path: str, lenient: bool,
                  patient: str | None = None) -> tuple[dict, set[str]]:
    """(searchset Bundle, patients whose data it carries)."""
    cursors = [v for k, v in params if k == "_cursor"]
    if len(cursors) > 1:
        raise InputError([Issue("?_cursor", "one _cursor at most", "value")])
    query = [(k, v) for k, v in params if k not in ("_cursor", "_format")]
    with db.reading(engine) as conn:
        result = search(conn, rtype, query, lenient=lenient, cursor=cursors[0] if cursors else None, patient=patient)
    base = base_url()
    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    links = [{"relation": "self", "url": f"{base}{path}?{urlencode(params)}"}]
    if result.next_cursor:
        links.append({"relation": "next", "url": f"{base}{path}?{urlencode(query + [('_cursor', result.next_cursor)])}"})
    bundle["link"] = links
    patients: set[str] = set()
    entries = []
    for mode, rows in (("match", result.rows), ("include", result.included)):
        for row in rows:
            resource = json.loads(row["body"])
            owner = patient_of(resource)
            if owner:
                patients.add(owner)
            entries.append({"fullUrl": f"{base}/{row['res_type']}/{row['res_id']}",
                            "resource": _subset(resource, result.elements, result.summary), "search": {"mode": mode}})
    if result.warnings:
        entries.append({"resource": operation_outcome(result.warnings), "search": {"mode": "outcome"}})
    if not result.summary_count:
        bundle["entry"] = entries
    return bundle, patients


@cache
def summary_elements(rtype: str) -> frozenset[str]:
    """The top-level elements R4 marks isSummary for a type (as fhir.resources records them)."""
    fields = model_class(rtype).model_fields
    return frozenset(f.alias or name for name, f in fields.items()
                     if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("summary_element_property"))


def _subset(resource: dict, elements: list[str] | None, summary: str | None) -> dict:
    if elements:
        kept = {k: v for k, v in resource.items() if k in ALWAYS_KEPT or k in elements}
    elif summary == "text":
        kept = {k: v for k, v in resource.items() if k in SUMMARY_TEXT_KEEP}
    elif summary == "true":
        allowed = summary_elements(resource["resourceType"])
        kept = {k: v for k, v in resource.items() if k in ALWAYS_KEPT or k in allowed}
    elif summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    else:
        return resource
    meta = dict(kept.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept
