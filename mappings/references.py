"""Identifiers, fullUrls and references: built and parsed here only."""
from __future__ import annotations

import uuid
from functools import lru_cache

CANONICAL_BASE = "https://oncology-gateway.example.org/fhir"
FACT_SYSTEM = f"{CANONICAL_BASE}/NamingSystem/case-fact"
CASE_SYSTEM = f"{CANONICAL_BASE}/NamingSystem/case"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, CANONICAL_BASE)


def fact_identifier(case_id: str, fact_id: str, part: str | None = None) -> dict:
    """The deterministic business identifier of the resource made from one fact (and part of it)."""
    value = f"{case_id}/{fact_id}" + (f"/{part}" if part else "")
    return {"system": FACT_SYSTEM, "value": value}


def identifier_token(identifier: dict) -> str:
    """The search token 'system|value' used by conditional create/update ('|value' when there is no system)."""
    return f"{identifier.get('system', '')}|{identifier['value']}"


def resource_id(identifier: dict) -> str:
    """A stable logical id derived from the business identifier (a UUID, valid as a FHIR id)."""
    return _token_uuid(identifier_token(identifier))


@lru_cache(maxsize=4096)  # a case asks for each id several times (register, entry, provenance)
def _token_uuid(token: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, token))


def full_url(identifier: dict) -> str:
    return f"urn:uuid:{resource_id(identifier)}"


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
