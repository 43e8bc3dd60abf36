"""Identifiers, fullUrls and references: built and parsed here only."""
from __future__ import annotations

import hashlib
import os
import time
import uuid
from functools import lru_cache
from urllib.parse import quote

CANONICAL_BASE = "https://oncology-gateway.example.org/fhir"
FACT_SYSTEM = f"{CANONICAL_BASE}/NamingSystem/case-fact"
CASE_SYSTEM = f"{CANONICAL_BASE}/NamingSystem/case"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, CANONICAL_BASE)


# A source's name becomes one path segment of its namespaces; longer names are hashed so that the system stays
# well inside the 255 characters the search index keeps (two long names must not collide in the index).
MAX_SOURCE_SEGMENT = 128


def source_segment(source: str) -> str:
    """The path segment naming a submitting source (the authenticated client): percent-encoded, so that no two
    names give one segment and none can add a path level; a name longer than MAX_SOURCE_SEGMENT is hashed."""
    segment = quote(source, safe="")
    if len(segment) > MAX_SOURCE_SEGMENT:
        segment = "sha256-" + hashlib.sha256(source.encode("utf-8")).hexdigest()
    return segment


def fact_system(source: str | None = None) -> str:
    """The namespace of case-fact identifiers: FACT_SYSTEM for the source-neutral mapping (POST /cases), and
    FACT_SYSTEM/<source> for what the gateway stores on behalf of one source: a caseId is unique only within
    the source that chose it, so two sources' cases never share an identifier (nor, therefore, an id)."""
    return FACT_SYSTEM if source is None else f"{FACT_SYSTEM}/{source_segment(source)}"


def fact_identifier(case_id: str, fact_id: str, part: str | None = None, source: str | None = None) -> dict:
    """The deterministic business identifier of the resource made from one fact (and part of it)."""
    value = f"{case_id}/{fact_id}" + (f"/{part}" if part else "")
    return {"system": fact_system(source), "value": value}


def case_identifier(case_id: str, source: str | None = None) -> dict:
    """The identifier of a whole case (Provenance.entity), in the same per-source namespace as its facts."""
    system = CASE_SYSTEM if source is None else f"{CASE_SYSTEM}/{source_segment(source)}"
    return {"system": system, "value": case_id}


def identifier_token(identifier: dict) -> str:
    """The search token 'system|value' used by conditional create/update and identifier searches ('|value' when
    there is no system; 'system|' for an identifier without a value, which R4 allows)."""
    return f"{identifier.get('system', '')}|{identifier.get('value', '')}"


def resource_id(identifier: dict) -> str:
    """A stable logical id derived from the business identifier (a UUID, valid as a FHIR id)."""
    return _token_uuid(identifier_token(identifier))


@lru_cache(maxsize=4096)  # a case asks for each id several times (register, entry, provenance)
def _token_uuid(token: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, token))


def full_url(identifier: dict) -> str:
    return f"urn:uuid:{resource_id(identifier)}"


def new_resource_id() -> str:
    """The id of a resource created without one: a UUID of version 7 (RFC 9562), 48 bits of Unix milliseconds
    then 74 random bits. Random as uuid4 for guessing, but ids made together sort together: each index keyed by id
    (the store's (type, id) key, the references to a new patient) takes a transaction's ids on one or two pages
    instead of one page each, at every scale (uuid4 spread 133 new ids over up to 133 pages, each then rewritten
    and logged). The time it carries is what meta.lastUpdated says anyway."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return str(uuid.UUID(int=value & ~(0xF << 76) & ~(0x3 << 62) | 0x7 << 76 | 0x2 << 62))


def reference(resource_type: str, logical_id: str) -> str:
    return f"{resource_type}/{logical_id}"


def parse_reference(ref: str) -> tuple[str | None, str]:
    """'Patient/123' -> ('Patient', '123'); 'urn:uuid:x' -> (None, 'urn:uuid:x'); absolute URLs keep their tail."""
    if ref.startswith("urn:"):
        return None, ref
    parts = ref.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, ref
