"""A case document to a validated R4 transaction Bundle: the entry point of the mapping layer."""
from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from mappings.case_validation import check_case
from mappings.context import MapContext
from mappings.errors import FhirValidationError
from mappings.fhir_validation import resource_issues
from mappings.references import full_url, identifier_token, resource_id
from mappings.timeline import Timeline
from mappings.to_condition import to_fhir_condition, to_fhir_syndrome_condition
from mappings.to_encounter import is_encounter, to_fhir_encounter
from mappings.to_medication import medication_parts, to_fhir_medication_statements
from mappings.to_observation import to_fhir_observation, to_fhir_outcome
from mappings.to_patient import to_fhir_patient
from mappings.to_procedure import to_fhir_procedure
from mappings.to_provenance import to_fhir_provenance

SECTION_TYPES = {"conditions": "Condition", "procedures": "Procedure", "medications": "MedicationStatement",
                 "observations": "Observation", "outcomes": "Observation"}


def _register_all(ctx: MapContext) -> None:
    """Give every fact its fullUrl first, so that any resource can reference any other."""
    ctx.register("patient", "Patient")
    if ctx.case["patient"].get("death"):
        ctx.urls["death"] = ctx.urls["patient"]
        ctx.types["death"] = "Patient"
    for section, resource_type in SECTION_TYPES.items():
        for fact in ctx.case.get(section, []):
            if section == "medications":
                for part, _ in medication_parts(fact):
                    ctx.register(fact["id"], resource_type, part)
            elif section == "procedures" and is_encounter(fact):
                ctx.register(fact["id"], "Encounter")  # the ICU stay: an encounter, not a procedure
            else:
                ctx.register(fact["id"], resource_type)


def map_resources(document: object, source: str | None = None) -> tuple[MapContext, list[dict]]:
    """Check the case, resolve its timeline, and map every fact; raises InputError on bad input."""
    case = check_case(document)
    ctx = MapContext(case, Timeline(case), source=source)
    _register_all(ctx)
    resources = [to_fhir_patient(ctx)]
    resources += [to_fhir_condition(ctx, f) for f in case.get("conditions", [])]
    resources += [to_fhir_syndrome_condition(ctx, f) for f in case.get("conditions", []) if f.get("functionalSyndrome")]
    resources += [to_fhir_encounter(ctx, f) if is_encounter(f) else to_fhir_procedure(ctx, f)
                  for f in case.get("procedures", [])]
    resources += [r for f in case.get("medications", []) for r in to_fhir_medication_statements(ctx, f)]
    resources += [to_fhir_observation(ctx, f) for f in case.get("observations", [])]
    resources += [to_fhir_outcome(ctx, f) for f in case.get("outcomes", [])]
    return ctx, resources


LEADING_KEYS = ("resourceType", "id", "meta", "extension")


def _ordered(resource: dict) -> dict:
    """resourceType, id, meta and extension first, as the FHIR JSON examples write them."""
    head = {k: resource[k] for k in LEADING_KEYS if k in resource}
    return head | {k: v for k, v in resource.items() if k not in head}


def _entry(resource: dict) -> dict:
    resource = _ordered(resource)
    identifier = resource["identifier"][0]
    query = quote(identifier_token(identifier), safe="")
    return {
        "fullUrl": full_url(identifier),
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}?identifier={query}"},
    }


def case_to_bundle(case: object, recorded: dt.datetime | None = None, source: str | None = None) -> dict:
    """The transaction Bundle of a case: conditional PUT by the deterministic identifiers, so it is idempotent."""
    ctx, resources = map_resources(case, source)
    entries = [_entry(r) for r in resources]
    provenance = to_fhir_provenance(ctx, entries, recorded)
    provenance_id = resource_id(ctx.identifier("provenance"))
    provenance["id"] = provenance_id
    entries.append({"fullUrl": f"urn:uuid:{provenance_id}", "resource": provenance,
                    "request": {"method": "PUT", "url": f"Provenance/{provenance_id}"}})
    issues = [i for n, e in enumerate(entries) for i in resource_issues(e["resource"], f"Bundle.entry[{n}].resource")]
    if issues:
        raise FhirValidationError(issues)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
