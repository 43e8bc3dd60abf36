"""Shared FHIR vocabulary, defined once: extension and profile URLs, the instant format the store writes, what
"the same content" means, and the order in which resource types are written so that references resolve.

Identifier tokens, ids and references live beside it in mappings/references.py; time units in
mappings/terminology/ucum_time_units.csv (read by mappings.timeline). Everything here is stdlib only, so every
layer (mappings, store, workers, the engines and the gateway) can import it.
"""
from __future__ import annotations

import datetime as dt

from mappings.references import CANONICAL_BASE

UCUM = "http://unitsofmeasure.org"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition"
LOCAL_EXT = f"{CANONICAL_BASE}/StructureDefinition"  # our own extensions
# Extensions: core (http://hl7.org/fhir/R4/extensibility-registry.html), mCODE, and our own event-time.
RELATIVE_URL = "http://hl7.org/fhir/StructureDefinition/cqf-relativeDateTime"
DUE_TO_URL = "http://hl7.org/fhir/StructureDefinition/condition-dueTo"
DATA_ABSENT_URL = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
INTENT_URL = f"{MCODE}/mcode-procedure-intent"
TUMOR_MARKER_PROFILE = f"{MCODE}/mcode-tumor-marker-test"
EVENT_TIME_URL = f"{LOCAL_EXT}/event-time"

# meta elements a FHIR server sets itself (R4 Resource.meta); a resource differing only in these is the same content.
SERVER_META = ("versionId", "lastUpdated")
# An upstream server also stamps meta.source with itself, so sync compares without it.
UPSTREAM_SERVER_META = (*SERVER_META, "source")

# Write order of resource types: reference targets before the resources that point at them (Provenance, which
# points at everything, last). Any order still works; this one makes fewer writes wait for a second pass.
WRITE_ORDER = ("Organization", "Location", "Practitioner", "PractitionerRole", "Group", "Patient", "Medication",
               "Encounter", "Condition", "Procedure", "MedicationStatement", "MedicationRequest",
               "MedicationAdministration", "Observation")
WRITTEN_LAST = ("Provenance",)


def write_rank(resource_type: str) -> int:
    """Position of a type in WRITE_ORDER; types not listed come after those listed and before WRITTEN_LAST."""
    if resource_type in WRITE_ORDER:
        return WRITE_ORDER.index(resource_type)
    return len(WRITE_ORDER) + (1 + WRITTEN_LAST.index(resource_type) if resource_type in WRITTEN_LAST else 0)


def instant(ms: int) -> str:
    """Epoch milliseconds as the FHIR instant the store writes: UTC, milliseconds, 'Z' (some servers compare
    instants as text, so one spelling everywhere)."""
    return format_instant(dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc))


def format_instant(moment: dt.datetime) -> str:
    """An aware datetime as a FHIR instant in the store's spelling (see instant)."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)


def now_instant() -> str:
    return instant(now_ms())


def content(resource: dict, server_meta: tuple[str, ...] = SERVER_META) -> dict:
    """The resource without what a server sets (id and the server_meta elements of meta): equal content means
    no new version (store) and no change to sync."""
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in server_meta}
    body = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    if meta:
        body["meta"] = meta
    return body
