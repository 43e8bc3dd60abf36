"""Which SMART-style scopes each request needs.

Scopes are `system/<Type>.<read|write>` (with `*` for any type) and `admin` for sync control, the queue
dashboard and the audit log. A request names the alternatives that satisfy it; any one is enough.
"""
from __future__ import annotations

from flask import Request

from mappings.references import parse_reference

PUBLIC_PATHS = ("/healthz", "/metadata", "/openapi.yaml")
PUBLIC_PREFIXES = ("/docs",)
ADMIN = "admin"
ADMIN_PREFIXES = ("/sync", "/jobs", "/AuditEvent", "/rq", "/metrics")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _type_scope(rtype: str, mode: str) -> set[str]:
    return {f"system/{rtype}.{mode}", f"system/*.{mode}"}


def required(request: Request) -> set[str]:
    """The scopes any one of which allows this request (empty set: no scope needed beyond authentication)."""
    path, method = request.path, request.method
    if path.startswith(ADMIN_PREFIXES):
        return {ADMIN}
    if path.startswith("/cases"):
        # Mapping reads PHI in and writes FHIR out; storing writes every clinical type.
        return {"system/*.write"}
    if method == "POST" and path in ("/", "/Bundle"):
        return {"system/*.write"}
    parts = [p for p in path.split("/") if p]
    # Bulk Data (service/bulk_api.py): an import writes every type; an export, its status and files read every type.
    if path.startswith("/$import"):
        return {"system/*.write"}
    if path.startswith("/$export") or (parts and parts[-1] == "$export"):
        return {"system/*.read"}
    if method == "POST" and len(parts) == 3 and parts[0] == "DocumentReference" and parts[2] == "$extract":
        return _type_scope("DocumentReference", "read")  # reads a stored note; stores nothing
    if path.startswith("/procedure-history") or (len(parts) == 3 and parts[2] == "procedure-history"):
        return _type_scope("Procedure", "read")
    if len(parts) >= 3 and parts[0] == "Patient" and parts[2] in ("$everything", "treatment-lines", "timeline"):
        return {"system/*.read"}
    if path.startswith("/treatment-lines"):
        return {"system/*.read"}
    if path == "/_history":
        return {"system/*.read"}
    if parts and parts[0][:1].isupper():
        rtype, _ = parse_reference(f"{parts[0]}/x")
        # POST _search is a read (search.html); everything else but GET writes.
        reading = method in ("GET", "HEAD") or (method == "POST" and parts[-1] == "_search")
        return _type_scope(rtype or parts[0], "read" if reading else "write")
    return {"system/*.read"}


def allowed(granted: frozenset[str], needed: set[str]) -> bool:
    # Any one needed scope granted (admin included) is enough: isdisjoint answers without building the intersection.
    return not needed or not granted.isdisjoint(needed)
