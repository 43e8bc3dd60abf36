"""The CapabilityStatement: what this gateway really supports, kept next to the routes it describes."""
from __future__ import annotations

from mappings.references import CANONICAL_BASE

SOFTWARE_VERSION = "0.1.0"


def capability_statement() -> dict:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "software": {"name": "oncology-gateway", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Oncology FHIR interoperability gateway: case data to FHIR R4"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Case mapping: POST /cases, POST /cases/$validate, GET /cases/schema (not FHIR operations; see /openapi.yaml).",
            "resource": [],
            "operation": [],
        }],
        "url": f"{CANONICAL_BASE}/CapabilityStatement/oncology-gateway",
    }
