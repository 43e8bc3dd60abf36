"""The CapabilityStatement: what this gateway really serves, built from the data the routes use (the search
parameters of mappings/search_parameters.json, the types of mappings/r4_resource_types.csv, the interactions of
service/resources.py); tests/test_rest_conformance.py checks every claim against the running routes."""
from __future__ import annotations

from mappings.references import CANONICAL_BASE
from service.resources import served_types
from store.bundle_plan import SERVER_ONLY_TYPES
from store.search import SEARCH_MODIFIERS, supported_parameters

SOFTWARE_VERSION = "0.2.0"
INSTANCE_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type")
SEARCH_DOCS = {"token": "system|code, |code, system|, code", "reference": "Type/id, id, absolute URL; one level of chaining",
               "date": "prefixes eq ne gt lt ge le sa eb ap", "string": "starts-with, case and accent insensitive",
               "uri": "exact"}
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
# Bulk Data IG canonicals (hl7.org/fhir/uv/bulkdata): what sync clients (ours too, workers/bulk_pull.py) look for.
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
BULK_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"  # + export, patient-export, group-export


def _interactions(rtype: str) -> list[str]:
    if rtype in SERVER_ONLY_TYPES:
        # The audit trail is its own table, listed by GET /AuditEvent (service/audit.py); it is never written
        # or read through the resource routes.
        return ["search-type"]
    # POST /Bundle processes a transaction, batch or collection (service/bundles.py): it does not store a Bundle.
    return [i for i in INSTANCE_INTERACTIONS if not (rtype == "Bundle" and i == "create")]


def _search_params(rtype: str) -> list[dict]:
    if rtype in SERVER_ONLY_TYPES:
        return [{"name": "patient", "type": "reference", "documentation": "Patient/id or id"}]
    return [{"name": name, "type": kind, "documentation": f"{SEARCH_DOCS.get(kind, '')}; modifiers: "
             f"{', '.join(sorted(SEARCH_MODIFIERS.get(kind, ()))) or 'none'}"}
            for name, kind in supported_parameters(rtype).items()]


def _resource(rtype: str) -> dict:
    writable = rtype not in SERVER_ONLY_TYPES
    entry: dict = {"type": rtype, "interaction": [{"code": i} for i in _interactions(rtype)],
                   "searchParam": _search_params(rtype)}
    if writable:
        entry.update({
            "versioning": "versioned", "readHistory": True, "updateCreate": True, "conditionalCreate": True,
            "conditionalRead": "full-support", "conditionalUpdate": True, "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical", "local"], "searchInclude": ["*"], "searchRevInclude": ["*"]})
    if rtype == "Patient":
        entry["operation"] = [{"name": "everything", "definition": EVERYTHING},
                              {"name": "export", "definition": f"{BULK_EXPORT}patient-export"}]
    if rtype == "Group":
        entry["operation"] = [{"name": "export", "definition": f"{BULK_EXPORT}group-export"}]
    return entry


def capability_statement() -> dict:
    types = sorted(served_types() | set(SERVER_ONLY_TYPES))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "kind": "instance",
        "software": {"name": "oncology-gateway", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Oncology FHIR interoperability gateway"},
        "instantiates": [BULK_DATA],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": [],
        "rest": [{
            "mode": "server",
            "documentation": ("Every resource type listed can be created, read, updated, deleted and read in history, "
                              "and searched by the parameters listed with it. Searches page by keyset "
                              "cursors; _sort, _count, _include, _revinclude, _summary, _elements and _total are "
                              "served; an unknown parameter or modifier is a 400, or ignored and reported with "
                              "Prefer: handling=lenient. Case mapping, procedure histories, treatment lines and sync "
                              "are described in /openapi.yaml."),
            "security": {"service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                  "code": "SMART-on-FHIR"}]}],
                         "description": "OAuth2 bearer JWT (RS256/ES384) with SMART system scopes, or an API key."},
            "resource": [_resource(t) for t in types],
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "operation": [{"name": "export", "definition": f"{BULK_EXPORT}export"}],
            "searchParam": [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}],
        }],
        "url": f"{CANONICAL_BASE}/CapabilityStatement/oncology-gateway",
    }
