"""Searchset Bundles with _count/_offset paging and absolute links."""
from __future__ import annotations

from urllib.parse import urlencode

from flask import request

from mappings.errors import CaseError, Issue

DEFAULT_COUNT = 50
MAX_COUNT = 1000


def page_params(params: dict[str, list[str]]) -> tuple[int, int]:
    """(_count, _offset) from the query, checked."""
    values = {}
    for name, default, upper in (("_count", DEFAULT_COUNT, MAX_COUNT), ("_offset", 0, None)):
        raw = params.get(name, [str(default)])[-1]
        if not raw.isdigit() or (name == "_count" and int(raw) == 0):
            raise CaseError([Issue(f"?{name}", f"{name} must be a {'positive' if name == '_count' else 'non-negative'} integer, got {raw!r}", "value")])
        values[name] = min(int(raw), upper) if upper else int(raw)
    return values["_count"], values["_offset"]


def base_url() -> str:
    return request.url_root.rstrip("/")


def searchset(resources: list[dict], params: dict[str, list[str]], path: str) -> dict:
    """One page of a searchset; 'next' carries the same query with the following offset."""
    count, offset = page_params(params)
    page = resources[offset:offset + count]
    base = base_url()
    query = {k: v for k, v in params.items() if k != "_offset"}

    def link(relation: str, at: int) -> dict:
        return {"relation": relation, "url": f"{base}{path}?{urlencode({**query, '_offset': [str(at)]}, doseq=True)}"}

    links = [link("self", offset)]
    if offset + count < len(resources):
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": links,
        "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in page],
    }
