"""The CapabilityStatement: what this gateway really serves, built from the data the routes use (the search
parameters of mappings/search_parameters.json, the interactions of service/resources.py)."""
from __future__ import annotations

from mappings.references import CANONICAL_BASE
from store.bundle_plan import SERVER_ONLY_TYPES
from store.search import SEARCH_MODIFIERS, SEARCHABLE, supported_parameters

SOFTWARE_VERSION = "0.2.0"
INSTANCE_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type")
SEARCH_DOCS = {"token": "system|code, |code, system|, code", "reference": "Type/id, id, absolute URL; one level of chaining",
               "date": "prefixes eq ne gt lt ge le sa eb ap", "string": "starts-with, case and accent insensitive",
               "uri": "exact"}
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"


def _resource(rtype: str) -> dict:
    writable = rtype not in SERVER_ONLY_TYPES
    interactions = [i for i in INSTANCE_INTERACTIONS if writable or i not in ("update", "delete", "create")]
    entry: dict = {
        "type": rtype, "versioning": "versioned", "readHistory": True, "updateCreate": writable,
        "conditionalCreate": writable, "conditionalRead": "full-support", "conditionalUpdate": writable,
        "conditionalDelete": "single" if writable else "not-supported", "referencePolicy": ["literal", "logical", "local"],
        "interaction": [{"code": i} for i in interactions],
        "searchParam": [{"name": name, "type": kind, "documentation": f"{SEARCH_DOCS.get(kind, '')}; modifiers: "
                         f"{', '.join(sorted(SEARCH_MODIFIERS.get(kind, ()))) or 'none'}"}
                        for name, kind in supported_parameters(rtype).items()],
        "searchInclude": ["*"], "searchRevInclude": ["*"],
    }
    if rtype == "Patient":
        entry["operation"] = [{"name": "everything", "definition": EVERYTHING}]
    return entry


def capability_statement() -> dict:
    types = sorted(set(SEARCHABLE) | {"Patient", "Provenance", "AuditEvent"})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "kind": "instance",
        "software": {"name": "oncology-gateway", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Oncology FHIR interoperability gateway"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": [],
        "rest": [{
            "mode": "server",
            "documentation": ("Every R4 resource type can be created, read, updated, deleted and read in history; the "
                              "types listed here also have their R4 search parameters indexed. Searches page by keyset "
                              "cursors; _sort, _count, _include, _revinclude, _summary, _elements and _total are "
                              "served; an unknown parameter or modifier is a 400, or ignored and reported with "
                              "Prefer: handling=lenient. Case mapping, procedure histories, treatment lines and sync "
                              "are described in /openapi.yaml."),
            "security": {"service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                  "code": "SMART-on-FHIR"}]}],
                         "description": "OAuth2 bearer JWT (RS256/ES384) with SMART system scopes, or an API key."},
            "resource": [_resource(t) for t in types],
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "searchParam": [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}],
            "operation": [{"name": "everything", "definition": EVERYTHING}],
        }],
        "url": f"{CANONICAL_BASE}/CapabilityStatement/oncology-gateway",
    }
