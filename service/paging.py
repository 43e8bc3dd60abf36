"""Searchset Bundles with _count/_offset paging and absolute links."""
from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import current_app, request
from flask.globals import _cv_request

from mappings.errors import InputError, Issue

DEFAULT_COUNT = 50
MAX_COUNT = 1000


def page_params(params: dict[str, list[str]]) -> tuple[int, int]:
    """(_count, _offset) from the query, checked."""
    values = {}
    for name, default, upper in (("_count", DEFAULT_COUNT, MAX_COUNT), ("_offset", 0, None)):
        raw = params.get(name, [str(default)])[-1]
        if not raw.isdigit() or (name == "_count" and int(raw) == 0):
            raise InputError([Issue(f"?{name}", f"{name} must be a {'positive' if name == '_count' else 'non-negative'} integer, got {raw!r}", "value")])
        values[name] = min(int(raw), upper) if upper else int(raw)
    return values["_count"], values["_offset"]


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?")


def base_url() -> str:
    """The gateway's own base URL for links and fullUrls, never taken from an arbitrary Host header (cached
    Bundles would carry a forged host to every later reader): GATEWAY_BASE_URL; else, with
    GATEWAY_TRUST_PROXY_HEADERS=1, X-Forwarded-Proto and X-Forwarded-Host; else the Host header only when it
    names the loopback interface (development); else http://GATEWAY_HOST:GATEWAY_PORT."""
    ctx = _cv_request.get()  # one context lookup for the request and the app (each proxy use is one)
    config = ctx.app.config
    if config.get("BASE_URL"):
        return str(config["BASE_URL"]).rstrip("/")
    if config.get("TRUST_PROXY_HEADERS"):
        proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        if proto in ("http", "https") and HOST.fullmatch(host):
            return f"{proto}://{host}{request.script_root}"
    req = ctx.request
    if req.trusted_hosts is not None:  # Flask's TRUSTED_HOSTS: the host is checked for each request
        return _base_from_host()
    # What follows depends on these alone, and working it out (host validation, URL quoting) cost a cached read as
    # much as its audit event: it is done once per host clients name (at most _MAX_BASES remembered).
    key = (req.scheme, req.headers.get("host"), req.server, req.root_path, config["GATEWAY_HOST"], config["GATEWAY_PORT"])
    found = _bases.get(key)
    if found is None:
        found = _base_from_host()
        if len(_bases) >= _MAX_BASES:
            _bases.clear()
        _bases[key] = found
    return found


_MAX_BASES = 1000
_bases: dict[tuple, str] = {}


def _base_from_host() -> str:
    config = current_app.config
    if request.host.rsplit(":", 1)[0] in LOOPBACK_NAMES or request.host in LOOPBACK_NAMES:
        return request.url_root.rstrip("/")
    return f"http://{config['GATEWAY_HOST']}:{config['GATEWAY_PORT']}{request.script_root}"


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
