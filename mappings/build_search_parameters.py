"""Rebuild mappings/search_parameters.json from the official FHIR R4 4.0.1 search-parameters.json.

    .venv/bin/python -m mappings.build_search_parameters path/to/search-parameters.json

Source used: http://hl7.org/fhir/R4/search-parameters.json as copied in github.com/medizininformatik-initiative/blaze
(search-parameters.json; only its entries with version 4.0.1). Each FHIRPath expression is narrowed to the simple
paths store/indexing.py evaluates; an expression that does not narrow (where(system=...), exists(), composites)
is left out rather than approximated. fhir.resources' R4B models tell a choice element (value[x]) from a plain one.
"""
from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).with_name("search_parameters.json")
MAIN = {"Patient", "Condition", "Procedure", "Observation", "MedicationStatement", "MedicationRequest",
        "MedicationAdministration", "Encounter", "DiagnosticReport"}
EVERY_TYPE = {"identifier", "patient", "subject"}
NAMED = {"Provenance": {"target"}, "Practitioner": {"name"}, "Organization": {"name"}, "Location": {"name"}}
# Patient parameters whose R4 expression needs more than a path (where(system=...), exists(), phonetics).
SKIP = {("Patient", "telecom"), ("Patient", "phonetic"), ("Patient", "deceased"), ("Patient", "email"),
        ("Patient", "phone"), ("Patient", "link")}
KINDS = {"token", "string", "reference", "date", "uri"}
CHOICE_TYPES = {"DateTime", "Period", "Instant", "Timing", "Boolean", "String", "CodeableConcept", "Reference",
                "Quantity", "Age", "Range", "Date", "Integer", "Coding", "Uri", "Canonical", "Ratio", "SampledData",
                "Time", "Duration", "Attachment", "Identifier"}


def _fields(rtype: str) -> set[str]:
    try:
        module = importlib.import_module("fhir.resources.R4B." + rtype.lower())
    except ImportError:   # R4-only types (not in R4B): no choice elements are searched on them here
        return set()
    return set(getattr(module, rtype).model_fields)


def _is_choice(rtype: str, element: str) -> bool:
    fields = _fields(rtype)
    return element not in fields and any(f[len(element):] in CHOICE_TYPES for f in fields if f.startswith(element))


def _narrow(base: str, expression: str) -> list[tuple[str, str | None]] | None:
    """(path, only-this-target-type) per alternative of the expression that belongs to `base`."""
    out = []
    for raw in expression.split("|"):
        e = raw.strip()
        m = re.fullmatch(r"\((\w+(?:\.\w+)*) as (\w+)\)(\.\w+)?", e)
        if m:
            e = f"{m.group(1)}.as({m.group(2)}){m.group(3) or ''}"
        if not e.startswith(base + "."):
            continue
        only = None
        m = re.search(r"\.where\(resolve\(\) is (\w+)\)$", e)
        if m:
            only, e = m.group(1), e[: m.start()]
        e = re.sub(r"\.as\((\w+)\)", lambda mm: mm.group(1)[0].upper() + mm.group(1)[1:], e)
        if not re.fullmatch(r"[A-Za-z]+(\.[A-Za-z]+)*", e):
            return None
        parts = e.split(".")
        if len(parts) == 2 and _is_choice(base, parts[1]):
            e += "[x]"
        out.append((e, only))
    return out


def build(source: dict) -> dict:
    rows = []
    for entry in source["entry"]:
        p = entry["resource"]
        if p.get("version") != "4.0.1" or p["type"] not in KINDS or "expression" not in p:
            continue
        for base in p["base"]:
            code = p["code"]
            if code.startswith("_") or (base, code) in SKIP:
                continue
            if not (base in MAIN or code in EVERY_TYPE or code in NAMED.get(base, ())):
                continue
            narrowed = _narrow(base, p["expression"])
            if not narrowed:
                continue
            row: dict = {"resource": base, "name": code, "type": p["type"], "paths": [path for path, _ in narrowed]}
            only = {o for _, o in narrowed} - {None}
            if only:
                row["target_type"] = only.pop()
            if p.get("target"):
                row["targets"] = p["target"] if len(p["target"]) < 20 else ["*"]
            row["expression"] = " | ".join(x.strip() for x in p["expression"].split("|")
                                           if x.strip().startswith((base + ".", "(" + base + ".")))
            row["source"] = p["url"]
            rows.append(row)
    rows.sort(key=lambda r: (r["resource"], r["name"]))
    return {
        "description": "FHIR R4 search parameters this store serves, by resource type. paths are evaluated by "
                       "store/indexing.py: dotted element names over the JSON (arrays flattened); a final [x] takes "
                       "the choice types that fit the parameter type; target_type keeps only references to that type "
                       "(R4 where(resolve() is T)). _id and _lastUpdated (Resource-id, Resource-lastUpdated) apply to "
                       "every type and read resources.res_id / resources.last_updated.",
        "source": "HL7 FHIR R4 4.0.1 search-parameters.json (http://hl7.org/fhir/R4/search-parameters.json), as copied "
                  "in github.com/medizininformatik-initiative/blaze search-parameters.json (entries with version 4.0.1)",
        "common": [
            {"name": "_id", "type": "token", "column": "res_id", "expression": "Resource.id",
             "source": "http://hl7.org/fhir/SearchParameter/Resource-id"},
            {"name": "_lastUpdated", "type": "date", "column": "last_updated", "expression": "Resource.meta.lastUpdated",
             "source": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
        ],
        "parameters": rows,
    }


if __name__ == "__main__":
    doc = build(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
    OUT.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"{len(doc['parameters'])} parameters on {len({r['resource'] for r in doc['parameters']})} types -> {OUT}")
