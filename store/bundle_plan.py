"""Checks an incoming Bundle and turns each entry into a planned write, collecting every problem by path."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from mappings.errors import CaseError, Issue
from mappings.fhir_validation import resource_issues
from store.references import iter_references

BUNDLE_TYPES = ("transaction", "batch", "collection")
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
TYPE_PATTERN = re.compile(r"^[A-Z][A-Za-z]+$")


@dataclass
class PlannedEntry:
    index: int
    method: str  # POST | PUT | DELETE
    rtype: str
    rid: str | None = None           # PUT/DELETE Type/id
    identifier: str | None = None    # conditional PUT / ifNoneExist: 'system|value'
    resource: dict | None = None
    full_url: str | None = None
    if_match: str | None = None
    issues: list[Issue] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"


def plan_bundle(bundle: object, max_entries: int) -> tuple[str, list[PlannedEntry]]:
    """(bundle type, planned entries). Raises CaseError for a bundle that is not a usable Bundle at all."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise CaseError([Issue("Bundle.resourceType", f"expected a Bundle, got {found!r}", "structure")])
    btype = bundle.get("type")
    if btype not in BUNDLE_TYPES:
        raise CaseError([Issue("Bundle.type", f"Bundle.type must be one of {', '.join(BUNDLE_TYPES)}, got {btype!r}", "code-invalid")])
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise CaseError([Issue("Bundle.entry", "Bundle.entry must be an array", "structure")])
    if len(entries) > max_entries:
        raise CaseError([Issue("Bundle.entry", f"{len(entries)} entries; the limit is {max_entries}", "too-long")], 413)
    planned = [_plan_entry(i, e, btype) for i, e in enumerate(entries)]
    _check_full_urls(planned)
    _check_internal_references(planned)
    return btype, planned


def _plan_entry(index: int, entry: object, btype: str) -> PlannedEntry:
    path = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        return PlannedEntry(index, "POST", "?", issues=[Issue(path, "an entry must be a JSON object", "structure")])
    resource = entry.get("resource")
    request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
    method = request.get("method") if btype != "collection" else _collection_method(resource)
    url = request.get("url", "") if btype != "collection" else ""
    full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
    planned = PlannedEntry(index, method if isinstance(method, str) else "?", "?", resource=resource, full_url=full_url,
                           if_match=request.get("ifMatch") if isinstance(request.get("ifMatch"), str) else None)
    if "fullUrl" in entry and full_url is None:
        planned.issues.append(Issue(f"{path}.fullUrl", "fullUrl must be a string", "structure"))
    if btype != "collection" and not isinstance(entry.get("request"), dict):
        planned.issues.append(Issue(f"{path}.request", f"a {btype} entry needs a request object", "required"))
        return planned
    if not isinstance(url, str):
        planned.issues.append(Issue(f"{path}.request.url", "request.url must be a string", "structure"))
        return planned
    if method == "DELETE":
        _plan_delete(planned, url)
        return planned
    if method not in ("POST", "PUT"):
        planned.issues.append(Issue(f"{path}.request.method", f"method {method!r} is not supported here (POST, PUT, DELETE)", "not-supported"))
        return planned
    planned.issues += _nulls(resource, f"{path}.resource") or resource_issues(resource, f"{path}.resource")
    if planned.issues:
        return planned
    planned.rtype = resource["resourceType"]
    if btype == "collection":
        _plan_collection(planned)
    elif method == "POST":
        _plan_post(planned, url, request.get("ifNoneExist"))
    else:
        _plan_put(planned, url)
    return planned


def _nulls(node: object, path: str) -> list[Issue]:
    """FHIR JSON never carries null for an element; fhir.resources would read it as absent and hide the error.
    (Inside arrays null can be legal, aligning primitive values with their extensions, so arrays are left to it.)"""
    issues = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in children:
        where = f"{path}[{key}]" if isinstance(node, list) else f"{path}.{key}"
        if value is None and isinstance(node, dict):
            issues.append(Issue(where, "null is not allowed in FHIR JSON: leave the element out", "structure"))
        elif value is not None:
            issues += _nulls(value, where)
    return issues


def _collection_method(resource: object) -> str:
    return "PUT" if isinstance(resource, dict) and (resource.get("id") or resource.get("identifier")) else "POST"


def _plan_collection(planned: PlannedEntry) -> None:
    """Collection entries have no request: keep by id, else by first identifier, else create."""
    resource = planned.resource
    if resource.get("id"):
        planned.rid = resource["id"]
    elif resource.get("identifier"):
        planned.identifier = _token(resource["identifier"][0])
    if planned.rid is None and planned.identifier is None:
        planned.method = "POST"


def _plan_post(planned: PlannedEntry, url: str, if_none_exist: str | None) -> None:
    path = planned.path
    if url.split("?")[0] != planned.rtype:
        planned.issues.append(Issue(f"{path}.request.url", f"POST url must be '{planned.rtype}', got {url!r}", "invalid"))
    if if_none_exist is not None and not isinstance(if_none_exist, str):
        planned.issues.append(Issue(f"{path}.request.ifNoneExist", "ifNoneExist must be a string", "structure"))
    elif if_none_exist:
        token = _identifier_query(if_none_exist)
        if token is None:
            planned.issues.append(Issue(f"{path}.request.ifNoneExist", "only 'identifier=system|value' is supported in ifNoneExist", "not-supported"))
        planned.identifier = token


def _plan_put(planned: PlannedEntry, url: str) -> None:
    path = planned.path
    base, _, query = url.partition("?")
    if base != planned.rtype and not base.startswith(planned.rtype + "/"):
        planned.issues.append(Issue(f"{path}.request.url", f"PUT url must start with '{planned.rtype}', got {url!r}", "invalid"))
        return
    if query:
        planned.identifier = _identifier_query(query)
        if planned.identifier is None:
            planned.issues.append(Issue(f"{path}.request.url", "conditional update supports only '?identifier=system|value'", "not-supported"))
        return
    rid = base.split("/", 1)[1] if "/" in base else ""
    if not ID_PATTERN.match(rid):
        planned.issues.append(Issue(f"{path}.request.url", f"PUT needs 'Type/id' with a valid id, got {url!r}", "invalid"))
    elif planned.resource.get("id") not in (None, rid):
        planned.issues.append(Issue(f"{path}.resource.id", f"resource id {planned.resource['id']!r} does not match the url id {rid!r}", "invalid"))
    planned.rid = rid


def _plan_delete(planned: PlannedEntry, url: str) -> None:
    rtype, _, rid = url.partition("/")
    if not TYPE_PATTERN.match(rtype) or not ID_PATTERN.match(rid):
        planned.issues.append(Issue(f"{planned.path}.request.url", f"DELETE needs 'Type/id', got {url!r}", "invalid"))
    planned.rtype, planned.rid, planned.resource = rtype, rid, None


def _token(identifier: dict) -> str:
    return f"{identifier.get('system', '')}|{identifier.get('value', '')}"


def _identifier_query(query: str) -> str | None:
    params = parse_qs(query.split("?")[-1], keep_blank_values=True)
    values = params.get("identifier")
    if len(params) != 1 or not values or len(values) != 1 or "|" not in values[0]:
        return None
    return unquote(values[0])


def _check_full_urls(planned: list[PlannedEntry]) -> None:
    seen: dict[str, int] = {}
    for p in planned:
        if p.full_url is None:
            continue
        if p.full_url in seen:
            p.issues.append(Issue(f"{p.path}.fullUrl", f"duplicate fullUrl {p.full_url!r} (also entry[{seen[p.full_url]}])", "invalid"))
        else:
            seen[p.full_url] = p.index


def _check_internal_references(planned: list[PlannedEntry]) -> None:
    """urn: references must name another entry of the bundle; nothing else can resolve them."""
    full_urls = {p.full_url for p in planned if p.full_url}
    for p in planned:
        if not isinstance(p.resource, dict):
            continue
        for path, ref in iter_references(p.resource, f"{p.path}.resource"):
            if ref.startswith("urn:") and ref not in full_urls:
                p.issues.append(Issue(path, f"reference {ref!r} matches no fullUrl in this bundle", "not-found"))
