"""The CapabilityStatement: what this gateway really supports, built from the same constants the routes use."""
from __future__ import annotations

from mappings.references import CANONICAL_BASE
from store.search import SEARCHABLE

SOFTWARE_VERSION = "0.1.0"
SEARCH_PARAMS = [("subject", "reference"), ("patient", "reference"), ("code", "token"), ("date", "date"),
                 ("identifier", "token"), ("_id", "token"), ("_lastUpdated", "date")]


def _resource(rtype: str) -> dict:
    entry = {"type": rtype, "versioning": "versioned", "readHistory": True, "conditionalCreate": True,
             "conditionalUpdate": True, "interaction": [{"code": "read"}, {"code": "vread"}]}
    if rtype in SEARCHABLE:
        entry["interaction"].append({"code": "search-type"})
        entry["searchParam"] = [{"name": n, "type": t} for n, t in SEARCH_PARAMS]
    if rtype == "Patient":
        entry["operation"] = [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
    return entry


def capability_statement() -> dict:
    types = sorted({"Patient", "Provenance", "AuditEvent", *SEARCHABLE})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "software": {"name": "oncology-gateway", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Oncology FHIR interoperability gateway"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": ("Any R4 resource type is accepted in transaction, batch and collection Bundles (POST / or "
                              "/Bundle) and can be read by id; search is offered for the types listed with searchParam. "
                              "Case mapping, procedure histories, treatment lines and sync are described in /openapi.yaml."),
            "security": {"service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                  "code": "SMART-on-FHIR"}]}],
                         "description": "OAuth2 bearer JWT (RS256/ES384) with SMART system scopes, or an API key."},
            "resource": [_resource(t) for t in types],
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}],
        }],
        "url": f"{CANONICAL_BASE}/CapabilityStatement/oncology-gateway",
    }
