"""Checks an incoming Bundle and turns each entry into a planned write, collecting every problem by path."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from mappings.errors import InputError, Issue
from mappings.fhir_validation import json_text, resource_issues
from mappings.references import identifier_token
from store.references import Reference, iter_references

BUNDLE_TYPES = ("transaction", "batch", "collection")
# Written by the gateway alone: a client that could write these could forge the audit trail.
SERVER_ONLY_TYPES = ("AuditEvent",)
# R4 transaction processing order (http.html#trules): deletes, creates, updates, then reads.
PROCESSING_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
TYPE_PATTERN = re.compile(r"^[A-Z][A-Za-z]+$")


@dataclass
class PlannedEntry:
    index: int
    method: str  # POST | PUT | DELETE | GET
    rtype: str
    rid: str | None = None           # PUT/DELETE/GET Type/id
    condition: list[tuple[str, str]] | None = None  # ifNoneExist / conditional PUT, DELETE / GET search: the query
    resource: dict | None = None
    full_url: str | None = None
    if_match: str | None = None
    issues: list[Issue] = field(default_factory=list)
    refs: list[Reference] | None = None   # every Reference.reference of resource, found at planning

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"


def plan_bundle(bundle: object, max_entries: int, from_json: bool = False) -> tuple[str, list[PlannedEntry]]:
    """(bundle type, planned entries). Raises InputError for a bundle that is not a usable Bundle at all.
    from_json: the bundle is what a JSON parser made (fhir_validation.resource_issues)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise InputError([Issue("Bundle.resourceType", f"expected a Bundle, got {found!r}", "structure")])
    btype = bundle.get("type")
    if btype not in BUNDLE_TYPES:
        raise InputError([Issue("Bundle.type", f"Bundle.type must be one of {', '.join(BUNDLE_TYPES)}, got {btype!r}", "code-invalid")])
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InputError([Issue("Bundle.entry", "Bundle.entry must be an array", "structure")])
    if len(entries) > max_entries:
        raise InputError([Issue("Bundle.entry", f"{len(entries)} entries; the limit is {max_entries}", "too-long")], 413)
    planned = [_plan_entry(i, e, btype, from_json) for i, e in enumerate(entries)]
    _check_full_urls(planned)
    _check_internal_references(planned)
    return btype, planned


def _plan_entry(index: int, entry: object, btype: str, from_json: bool = False) -> PlannedEntry:
    path = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        return PlannedEntry(index, "POST", "?", issues=[Issue(path, "an entry must be a JSON object", "structure")])
    resource = entry.get("resource")
    raw_request = entry.get("request")
    request: dict = raw_request if isinstance(raw_request, dict) else {}
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
    if method in ("DELETE", "GET"):
        _plan_delete_or_get(planned, url)
        return planned
    if method not in ("POST", "PUT"):
        planned.issues.append(Issue(f"{path}.request.method", f"method {method!r} is not supported here (POST, PUT, DELETE, GET)", "not-supported"))
        return planned
    refs: list[Reference] = []
    text = json_text(resource, True) if from_json and isinstance(resource, dict) else None
    read_from_text = isinstance(resource, dict) and text is not None and _top_level_references(resource, text, f"{path}.resource", refs)
    walked = [] if read_from_text else _scan(resource, f"{path}.resource", refs)
    planned.issues += walked or resource_issues(resource, f"{path}.resource", from_json, text)
    planned.refs = refs
    if planned.issues or not isinstance(resource, dict):  # a resource that is no object has an issue already
        return planned
    planned.rtype = resource["resourceType"]
    if planned.rtype in SERVER_ONLY_TYPES:
        planned.issues.append(Issue(f"{path}.resource.resourceType", f"{planned.rtype} is written by this server only", "forbidden"))
        return planned
    if btype == "collection":
        _plan_collection(planned)
    elif method == "POST":
        _plan_post(planned, url, request.get("ifNoneExist"))
    else:
        _plan_put(planned, url)
    return planned


def _scan(resource: object, path: str, refs: list[Reference]) -> list[Issue]:
    """One walk of the resource: the nulls, which FHIR JSON never carries for an element (fhir.resources would read
    one as absent and hide the error; inside arrays null can be legal, aligning primitive values with their
    extensions, so arrays are left to it), and every Reference.reference into refs. Paths are spelled out only
    for what is found: formatting one per element cost more than the walk."""
    issues: list[Issue] = []

    # A walker for objects and one for arrays: each value's type is tested once (one walker for both tested it again
    # on entry).
    def walk_object(node: dict, trail: tuple) -> None:
        for key, value in node.items():
            if value is None:
                issues.append(Issue(_spell(path, (trail, key)), "null is not allowed in FHIR JSON: leave the element out", "structure"))
            elif key == "reference" and isinstance(value, str):
                keys = _keys(trail)
                refs.append(Reference(_spell_keys(path, keys) + ".reference", value, keys))
            elif isinstance(value, dict):
                walk_object(value, (trail, key))
            elif isinstance(value, list):
                walk_array(value, (trail, key))

    def walk_array(node: list, trail: tuple) -> None:
        for i, value in enumerate(node):
            if isinstance(value, dict):
                walk_object(value, (trail, i))
            elif isinstance(value, list):
                walk_array(value, (trail, i))

    if isinstance(resource, dict):
        walk_object(resource, ())
    elif isinstance(resource, list):
        walk_array(resource, ())
    return issues


def _top_level_references(resource: dict, text: bytes, path: str, refs: list[Reference]) -> bool:
    """_scan's answer without its walk, when the resource's JSON text shows it: no null anywhere (the text has none),
    and every `"reference":` of the text is a string in an object at the resource's top level (subject, encounter:
    where nearly every reference of a record sits). Puts those in refs and says True; False (refs untouched) when
    the text holds other ones, which only the walk finds. A string value cannot hold `"reference":` (its quotes are
    escaped), so the count is exact. ~4 us less per resource of a Synthea-shaped transaction (bench/ingest.py)."""
    if b"null" in text:
        return False
    wanted = text.count(b'"reference":')
    found = []
    for key, value in resource.items():
        if type(value) is dict and type(ref := value.get("reference")) is str:
            found.append(Reference(f"{path}.{key}.reference", ref, (key,)))
    if len(found) != wanted:
        return False
    refs += found
    return True


def _keys(trail: tuple) -> tuple[str | int, ...]:
    """The linked trail (parent trail, key) as a flat tuple of keys from the resource's root."""
    keys: list[str | int] = []
    while trail:
        trail, key = trail
        keys.append(key)
    return tuple(reversed(keys))


def _spell(path: str, trail: tuple) -> str:
    return _spell_keys(path, _keys(trail))


def _spell_keys(path: str, keys: tuple[str | int, ...]) -> str:
    return path + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)


def _collection_method(resource: object) -> str:
    return "POST"


def _plan_collection(planned: PlannedEntry) -> None:
    """Collection entries have no request: create only (never overwrite by id), once per first identifier."""
    identifiers = (planned.resource or {}).get("identifier") or []
    first = identifiers[0] if isinstance(identifiers, list) and identifiers else None
    if isinstance(first, dict) and first.get("value"):
        planned.condition = [("identifier", identifier_token(first))]


def _plan_post(planned: PlannedEntry, url: str, if_none_exist: object) -> None:
    path = planned.path
    if url.split("?")[0].strip("/") != planned.rtype:
        planned.issues.append(Issue(f"{path}.request.url", f"POST url must be '{planned.rtype}', got {url!r}", "invalid"))
    if if_none_exist is not None and not isinstance(if_none_exist, str):
        planned.issues.append(Issue(f"{path}.request.ifNoneExist", "ifNoneExist must be a string", "structure"))
    elif if_none_exist:
        planned.condition = _query(if_none_exist, f"{path}.request.ifNoneExist", planned.issues)


def _plan_put(planned: PlannedEntry, url: str) -> None:
    path = planned.path
    base, _, query = url.partition("?")
    base = base.strip("/")
    if base != planned.rtype and not base.startswith(planned.rtype + "/"):
        planned.issues.append(Issue(f"{path}.request.url", f"PUT url must start with '{planned.rtype}', got {url!r}", "invalid"))
        return
    if query or base == planned.rtype:
        planned.condition = _query(query, f"{path}.request.url", planned.issues)
        return
    rid = base.split("/", 1)[1]
    if not ID_PATTERN.match(rid):
        planned.issues.append(Issue(f"{path}.request.url", f"PUT needs 'Type/id' with a valid id, got {url!r}", "invalid"))
    elif (given := (planned.resource or {}).get("id")) not in (None, rid):
        planned.issues.append(Issue(f"{path}.resource.id", f"resource id {given!r} does not match the url id {rid!r}", "invalid"))
    planned.rid = rid


def _plan_delete_or_get(planned: PlannedEntry, url: str) -> None:
    """DELETE Type/id or Type?query (conditional); GET Type/id (read) or Type?query (search)."""
    base, _, query = url.partition("?")
    rtype, _, rid = base.strip("/").partition("/")
    where = f"{planned.path}.request.url"
    planned.rtype, planned.resource = rtype, None
    if not TYPE_PATTERN.match(rtype):
        planned.issues.append(Issue(where, f"{planned.method} needs 'Type/id' or 'Type?query', got {url!r}", "invalid"))
    elif rid:
        if query or not ID_PATTERN.match(rid):
            planned.issues.append(Issue(where, f"{planned.method} needs 'Type/id' or 'Type?query', got {url!r}", "invalid"))
        planned.rid = rid
    else:
        planned.condition = _query(query, where, planned.issues, allow_empty=planned.method == "GET")
    if planned.method == "DELETE" and rtype in SERVER_ONLY_TYPES:
        planned.issues.append(Issue(where, f"{rtype} is written by this server only", "forbidden"))


def _query(query: str, path: str, issues: list[Issue], allow_empty: bool = False) -> list[tuple[str, str]]:
    """The search criteria of a conditional interaction; an empty one would match everything and is refused."""
    pairs = parse_qsl(query.split("?", 1)[-1], keep_blank_values=True)
    if not pairs and not allow_empty:
        issues.append(Issue(path, "a conditional interaction needs search criteria (e.g. 'identifier=system|value')", "required"))
    return pairs


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
        refs = p.refs if p.refs is not None else iter_references(p.resource, f"{p.path}.resource")
        for path, ref, *_ in refs:
            if ref.startswith("urn:") and ref not in full_urls:
                p.issues.append(Issue(path, f"reference {ref!r} matches no fullUrl in this bundle", "not-found"))
