"""One key per input resource and resolution of references to it, whatever form the references take.

Our mapped bundles reference resources by `urn:uuid:` fullUrls that are derived from the business identifier
(mappings.references.full_url), so a bare resource list can still be joined; plain FHIR uses `Type/id`.
"""
from __future__ import annotations

import hashlib
import json

from mappings.references import full_url, parse_reference


def _aliases(resource: dict) -> list[str]:
    rtype = resource.get("resourceType", "")
    found = []
    if resource.get("id"):
        found.append(f"{rtype}/{resource['id']}")
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
            found.append(full_url(ident))
    return found


def resource_key(resource: dict, aliases: list[str] | None = None) -> str:
    """The reference string the summary uses for a resource: Type/id, else its identifier-derived urn:uuid."""
    aliases = _aliases(resource) if aliases is None else aliases
    if aliases:
        return aliases[0]
    digest = hashlib.sha1(json.dumps(resource, sort_keys=True).encode()).hexdigest()[:16]
    return f"{resource.get('resourceType', 'Resource')}/content-{digest}"


class ResourceIndex:
    """Resources by key, sorted by key so that everything downstream is independent of input order."""

    def __init__(self, resources: list[dict]):
        self.by_key: dict[str, dict] = {}
        self._alias: dict[str, str] = {}
        self._types: dict[str, list[tuple[str, dict]]] = {}
        keyed = []
        for resource in resources:
            aliases = _aliases(resource)
            keyed.append((resource_key(resource, aliases), aliases, resource))
        keyed.sort(key=lambda k: k[0])
        for key, aliases, resource in keyed:
            if key not in self.by_key:
                self.by_key[key] = resource
                self._types.setdefault(resource.get("resourceType", ""), []).append((key, resource))
            for alias in aliases:
                self._alias.setdefault(alias, key)

    def resolve(self, reference: dict | str | None) -> str | None:
        """The key of a referenced resource in this list, or None when it is not here."""
        if isinstance(reference, dict):
            reference = reference.get("reference")
        if not reference:
            return None
        if reference in self._alias:
            return self._alias[reference]
        rtype, rid = parse_reference(reference)
        return self._alias.get(f"{rtype}/{rid}") if rtype else None

    def of_type(self, *types: str) -> list[tuple[str, dict]]:
        """Resources of these types, in key order."""
        if len(types) == 1:
            return list(self._types.get(types[0], []))
        return sorted((p for t in set(types) for p in self._types.get(t, [])), key=lambda p: p[0])

    def patient(self) -> tuple[str, dict] | None:
        patients = self.of_type("Patient")
        return patients[0] if patients else None
